/* chat.c: being written */
