/* fault_client.h - starting and stopping tests/fault_server.py from a C
 * test: the server prints its port and a port whose accept queue is full
 * (a connect there hangs), and exits when its standard input closes, so a
 * test that dies takes the server with it. Test-only; static inline so each
 * test that includes it gets its own copy and no unused-function warnings. */
#ifndef KVCHAT_TEST_FAULT_CLIENT_H
#define KVCHAT_TEST_FAULT_CLIENT_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

struct fault_server {
    pid_t pid;
    int in;        /* the server's standard input, -1 when not running */
    int port;      /* where it answers */
    int hole_port; /* where a connect hangs */
};

/* Runs SCRIPT (tests/fault_server.py) with python3. False when it cannot be
 * started or does not say its ports. */
static inline bool fault_server_start(struct fault_server *s, const char *script)
{
    s->in = -1;
    int out[2], in[2];
    if (pipe(out) != 0)
        return false;
    if (pipe(in) != 0) {
        close(out[0]);
        close(out[1]);
        return false;
    }
    s->pid = fork();
    if (s->pid == 0) {
        dup2(out[1], 1);
        dup2(in[0], 0);
        close(out[0]);
        close(in[1]);
        execlp("python3", "python3", script, "--lifetime", "300", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    s->in = in[1];
    FILE *f = fdopen(out[0], "r");
    bool ok = f && fscanf(f, "%d %d", &s->port, &s->hole_port) == 2;
    if (f)
        fclose(f);
    else
        close(out[0]);
    if (!ok) {
        close(s->in);
        waitpid(s->pid, NULL, 0);
        s->in = -1;
    }
    return ok;
}

static inline void fault_server_stop(struct fault_server *s)
{
    if (s->in < 0)
        return;
    close(s->in); /* the server exits when its standard input closes */
    waitpid(s->pid, NULL, 0);
    s->in = -1;
}

#endif
