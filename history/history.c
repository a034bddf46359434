/* history.c: being written */
