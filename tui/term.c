/* term.c - the terminal put back on every way out: quit signals (SIGTERM,
 * SIGHUP, SIGINT, SIGQUIT) only set a flag the main loop reads, so the
 * normal teardown runs; crashes restore the terminal from the handler with
 * async-signal-safe calls and die of the same signal. */
#include "ui_internal.h"

#include <signal.h>
#include <termios.h>
#include <unistd.h>

/* The only globals. Signal handlers can reach nothing else: the flag, and
 * the terminal state to put back when the process crashes. */
static volatile sig_atomic_t g_signal;
static struct termios g_saved_tio;
static volatile sig_atomic_t g_tio_saved;

static void restore_terminal_raw(void)
{
    /* Async-signal-safe: leave the alternate screen, show the cursor, end
     * mouse reporting and bracketed paste, put the tty modes back. */
    static const char seq[] = "\033[?1000l\033[?1002l\033[?1006l\033[?2004l\033[?25h\033[?1049l\r\n";
    ssize_t r = write(STDOUT_FILENO, seq, sizeof seq - 1);
    (void)r;
    if (g_tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tio);
}

static void on_crash(int sig)
{
    restore_terminal_raw();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_quit_signal(int sig)
{
    g_signal = sig;
}

void term_save(void)
{
    if (tcgetattr(STDIN_FILENO, &g_saved_tio) == 0)
        g_tio_saved = 1;
}

void term_install_signals(void)
{
    g_signal = 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_quit_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void term_restore(void)
{
    if (g_tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tio);
}

int term_signal(void)
{
    return g_signal;
}
