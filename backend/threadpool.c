/* threadpool.c: being written */
