/* cpu.c: being written */
