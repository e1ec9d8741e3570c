/* joblet-init: the main process of every Joblet job (docs/architecture.md, "Inside a job").
 *
 * It runs inside the job's sandbox as the job's user, with everything the job has and nothing
 * more (its root, its namespaces, its seccomp filter, no capabilities), and everything it starts
 * is in the job's cgroup, so counted against the job's limits. It
 *   - starts the job's command as its child and ends with it, with its exit status (or its
 *     signal, where it can be re-raised): it reaps orphans (a subreaper, or PID 1 of the job's
 *     PID namespace) and passes on the signals it gets, but for stop's SIGTERM from PID 1,
 *     which reaches every process of the job's cgroup, the command's included: once);
 *   - serves the agent on the listening socket PID 1 passed it (fd 3, LISTEN_FDS=1): a socket
 *     whose path lies in the job's root-only directory on the host, so only root reaches it and
 *     no job ever sees it. Each connection gets a forked handler that runs one exec, attaches to
 *     the command's terminal or stdin, or does file operations under /work or a volume, never
 *     following a link (open_beneath).
 * The agent trusts nothing it reads from here more than the job's output.
 *
 * Frames, both ways: [type: 1 byte][length: 4 bytes, big-endian][payload]. The protocol is
 * joblet_agent/domain/exec_frames.py's; its docstring lists the frame types.
 *
 * Usage: joblet-init [--tty] [--stdin] [--serve IDLE_SECONDS] [--] PATH ARGV0 [ARGS...]
 *   PATH is the program (resolved by the agent), ARGV0 and ARGS its argv;
 *   --tty: the command gets a terminal, which an attach relays; --stdin: a pipe an attach feeds;
 *   --serve: no command; serve until IDLE_SECONDS pass with no connection (an ended job's files).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST (1u << 20) /* an exec's argv and environment, a file operation */
#define MAX_DATA (1u << 20)    /* one stdin or file data frame from the agent */
#define CHUNK (64 * 1024)      /* output read at once */
#define MAX_HANDLERS 256
#define FIRST_FRAME_MS 5000    /* the agent sends its request at once */
#define HANGUP_GRACE_MS 2000   /* SIGHUP, then SIGKILL, for an exec whose agent went away */
#define DRAIN_MS 50            /* output still coming after an exec's process ended... */
#define DRAIN_MOST_MS 1000     /* ...but not from a process it left behind, for ever */
#define LINGER_MS 2000         /* after an exec's end, for the agent to close (linger) */
#define ATTACH_FLUSH_MS 2000   /* the end of a command's terminal output, to its attach */

extern char **environ;

static int listen_fd = -1;
static int signal_fd = -1;
static pid_t main_pid = -1;
static int main_master = -1;  /* --tty: the command's terminal */
static int main_stdin = -1;   /* --stdin: the write end of its stdin, until an attach takes it */
static pid_t attach_pid = 0;
static pid_t handlers[MAX_HANDLERS]; /* the connections' handlers alive */
static int nhandlers = 0;
static sigset_t handled;

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int forget_handler(pid_t pid) {
    for (int k = 0; k < nhandlers; k++)
        if (handlers[k] == pid) {
            handlers[k] = handlers[--nhandlers];
            return 1;
        }
    return 0;
}

/* ---- frames ------------------------------------------------------------------------------ */

static int write_full(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = 0;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_frame(int fd, char type, const void *data, size_t len) {
    unsigned char head[5] = {(unsigned char)type, (unsigned char)(len >> 24),
                             (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                             (unsigned char)len};
    if (write_full(fd, head, 5) < 0) return -1;
    return len ? write_full(fd, data, len) : 0;
}

/* A frame from the agent; *data is malloc'd with a NUL after it. -1 on EOF or error. */
static int recv_frame(int fd, char *type, char **data, uint32_t *len, uint32_t most) {
    unsigned char head[5];
    if (read_full(fd, head, 5) < 0) return -1;
    uint32_t n = (uint32_t)head[1] << 24 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 8 | head[4];
    if (n > most) {
        errno = EMSGSIZE;
        return -1;
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) return -1;
    if (n && read_full(fd, buf, n) < 0) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *type = (char)head[0];
    *data = buf;
    *len = n;
    return 0;
}

static void send_error(int fd, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_error(int fd, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(msg, sizeof msg, "%s", code);
    vsnprintf(msg + n + 1, sizeof msg - (size_t)n - 1, fmt, ap);
    va_end(ap);
    send_frame(fd, 'E', msg, (size_t)n + 1 + strlen(msg + n + 1));
}

static const char *errno_code(int e) {
    switch (e) {
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ELOOP: return "ELOOP";
    case EXDEV: return "EXDEV";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "ENOSPC";
    case EEXIST: return "EEXIST";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EROFS: return "EROFS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    default: return "EIO";
    }
}

/* NUL-separated fields of a request: the next one, or NULL at the end. */
static char *next_field(char **cursor, char *end) {
    if (*cursor >= end) return NULL;
    char *field = *cursor;
    *cursor += strlen(field) + 1;
    return field;
}

/* ---- children ---------------------------------------------------------------------------- */

/* What a program started by init must not inherit: blocked signals, ignored SIGPIPE. */
static void as_fresh_process(void) {
    sigset_t none;
    sigemptyset(&none);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void set_size(int master, unsigned rows, unsigned cols) {
    if (master < 0 || !rows || !cols) return;
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    ioctl(master, TIOCSWINSZ, &ws);
}

/* A new terminal; the master (CLOEXEC) is returned, the slave's name put in `name`. */
static int open_terminal(char *name, size_t size) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, name, size) != 0) {
        close(master);
        return -1;
    }
    return master;
}

/* In a child: the terminal `name` becomes its controlling terminal and stdio. */
static void take_terminal(const char *name) {
    setsid();
    int slave = open(name, O_RDWR);
    if (slave < 0) _exit(126);
    ioctl(slave, TIOCSCTTY, 0);
    dup2(slave, 0);
    dup2(slave, 1);
    dup2(slave, 2);
    if (slave > 2) close(slave);
}

/* ---- exec: a command of the agent's, relayed ------------------------------------------- */

struct relay {
    int conn;
    pid_t child;
    int out, err;   /* output to read (out is the terminal's master with a tty) */
    int in;         /* where stdin goes (the master with a tty); -1 once closed */
    int tty;
    char *pending;  /* stdin not written yet */
    size_t pending_len, pending_off;
    int eof_after_pending;
};

static void relay_output(struct relay *r, int *fd, char type) {
    char buf[CHUNK];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) {
        send_frame(r->conn, type, buf, (size_t)n);
        return;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    /* EOF, or EIO from a terminal whose last slave closed */
    if (*fd == r->in) r->in = -1;
    close(*fd);
    *fd = -1;
}

static void write_pending(struct relay *r) {
    while (r->pending && r->in >= 0) {
        ssize_t w = write(r->in, r->pending + r->pending_off, r->pending_len - r->pending_off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            /* EPIPE: the process closed its stdin; drop what it did not take */
            r->pending_off = r->pending_len;
        } else {
            r->pending_off += (size_t)w;
        }
        if (r->pending_off == r->pending_len) {
            free(r->pending);
            r->pending = NULL;
        }
    }
    if (!r->pending && r->eof_after_pending && r->in >= 0 && !r->tty) {
        close(r->in);
        r->in = -1;
    }
}

/* One frame from the agent during an exec or an attach; 0, or -1 when the agent is gone. */
static int relay_input(struct relay *r, pid_t group) {
    char type, *data;
    uint32_t len;
    if (recv_frame(r->conn, &type, &data, &len, MAX_DATA) < 0) return -1;
    switch (type) {
    case 'i': /* stdin */
        if (r->in >= 0 && len) {
            r->pending = data;
            r->pending_len = len;
            r->pending_off = 0;
            data = NULL;
        }
        break;
    case 'd': /* end of stdin */
        r->eof_after_pending = 1;
        break;
    case 'w': /* window size: rows, columns, 2 bytes each */
        if (len == 4 && r->tty)
            set_size(r->out, (unsigned)((unsigned char)data[0] << 8 | (unsigned char)data[1]),
                     (unsigned)((unsigned char)data[2] << 8 | (unsigned char)data[3]));
        break;
    case 'k': /* a signal to its process group */
        if (len == 1 && group > 0 && data[0] > 0 && data[0] < 65) kill(-group, data[0]);
        break;
    default:
        break;
    }
    free(data);
    write_pending(r);
    return 0;
}

/* After the end frame: wait (briefly) for the agent to close. Input it sent meanwhile (an end
 * of stdin racing the exit) is read and dropped; closing at once would make that write fail,
 * and the agent's socket then reports the failure instead of the end frame it holds. */
static void linger(int conn) {
    char buf[4096];
    long until = now_ms() + LINGER_MS;
    shutdown(conn, SHUT_WR);
    for (;;) {
        long left = until - now_ms();
        if (left <= 0) return;
        struct pollfd p = {conn, POLLIN, 0};
        int ready = poll(&p, 1, (int)left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return;
        ssize_t n = read(conn, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
    }
}

static void handle_exec(int conn, char *req, uint32_t len) {
    char *cursor = req, *end = req + len, *field;
    int tty = 0, stdin_open = 0;
    unsigned rows = 0, cols = 0;
    const char *cwd = "/work";
    size_t nargs = 0, nenv = 0;
    char **args = calloc(len / 2 + 2, sizeof *args), **env = calloc(len / 2 + 2, sizeof *env);
    if (!args || !env) _exit(1);
    while ((field = next_field(&cursor, end))) {
        if (!strncmp(field, "arg=", 4)) args[nargs++] = field + 4;
        else if (!strncmp(field, "env=", 4)) env[nenv++] = field + 4;
        else if (!strncmp(field, "cwd=", 4)) cwd = field + 4;
        else if (!strcmp(field, "tty=1")) tty = 1;
        else if (!strcmp(field, "stdin=1")) stdin_open = 1;
        else if (!strncmp(field, "rows=", 5)) rows = (unsigned)atoi(field + 5);
        else if (!strncmp(field, "cols=", 5)) cols = (unsigned)atoi(field + 5);
    }
    if (!nargs) {
        send_error(conn, "EINVAL", "no command");
        return;
    }
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, status[2];
    char name[128];
    int master = -1;
    if (tty) {
        master = open_terminal(name, sizeof name);
        if (master < 0) {
            send_error(conn, errno_code(errno), "no terminal: %s", strerror(errno));
            return;
        }
        set_size(master, rows, cols);
    } else if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
               (stdin_open && pipe2(in, O_CLOEXEC) < 0)) {
        send_error(conn, errno_code(errno), "no pipes: %s", strerror(errno));
        return;
    }
    if (pipe2(status, O_CLOEXEC) < 0) {
        send_error(conn, errno_code(errno), "no pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        send_error(conn, errno_code(errno), "cannot fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        as_fresh_process();
        if (tty) {
            take_terminal(name);
        } else {
            setsid();
            int null = open("/dev/null", O_RDONLY);
            dup2(stdin_open ? in[0] : null, 0);
            dup2(out[1], 1);
            dup2(err[1], 2);
        }
        int e = 0;
        if (chdir(cwd) < 0) {
            e = errno;
        } else {
            for (size_t i = 0; i < nenv; i++) putenv(env[i]);
            args[nargs] = NULL;
            execvp(args[0], args);
            e = errno;
        }
        (void)!write(status[1], &e, sizeof e);
        _exit(127);
    }
    close(status[1]);
    int e = 0;
    ssize_t got;
    do got = read(status[0], &e, sizeof e);
    while (got < 0 && errno == EINTR);
    close(status[0]);
    if (got == (ssize_t)sizeof e) {
        waitpid(pid, NULL, 0);
        send_error(conn, errno_code(e), "%s", strerror(e));
        return;
    }
    char started[32];
    send_frame(conn, 'p', started, (size_t)snprintf(started, sizeof started, "%d", pid));

    struct relay r = {.conn = conn, .child = pid, .tty = tty};
    if (tty) {
        r.out = master;
        r.err = -1;
        r.in = master;
        fcntl(master, F_SETFL, O_NONBLOCK);
    } else {
        close(out[1]);
        close(err[1]);
        r.out = out[0];
        r.err = err[0];
        r.in = -1;
        if (stdin_open) {
            close(in[0]);
            r.in = in[1];
            fcntl(r.in, F_SETFL, O_NONBLOCK);
        }
    }
    int wstatus = 0, exited = 0, agent_gone = 0;
    long kill_at = 0, drain_until = 0, quiet_at = 0;
    for (;;) {
        struct pollfd p[5];
        int n = 0, iconn = -1, iout = -1, ierr = -1, iin = -1, isig;
        if (!agent_gone && !r.pending) iconn = n, p[n++] = (struct pollfd){conn, POLLIN, 0};
        if (r.out >= 0) iout = n, p[n++] = (struct pollfd){r.out, POLLIN, 0};
        if (r.err >= 0) ierr = n, p[n++] = (struct pollfd){r.err, POLLIN, 0};
        if (r.pending && r.in >= 0) iin = n, p[n++] = (struct pollfd){r.in, POLLOUT, 0};
        isig = n, p[n++] = (struct pollfd){signal_fd, POLLIN, 0};
        long now = now_ms(), timeout = -1;
        if (exited) timeout = (quiet_at < drain_until ? quiet_at : drain_until) - now;
        else if (kill_at) timeout = kill_at - now;
        if (timeout != -1 && timeout < 0) timeout = 0;
        int ready = poll(p, (nfds_t)n, (int)timeout);
        if (ready < 0 && errno != EINTR) break;
        now = now_ms();
        if (exited && (now >= drain_until || (ready == 0 && now >= quiet_at)))
            break; /* its output went quiet: what a process it left behind holds is not waited for */
        if (kill_at && now >= kill_at) {
            kill(-pid, SIGKILL);
            kill_at = 0;
        }
        if (ready <= 0) continue;
        if (iconn >= 0 && p[iconn].revents) {
            if (relay_input(&r, pid) < 0) {
                agent_gone = 1;
                kill_at = now + HANGUP_GRACE_MS;
                kill(-pid, SIGHUP);
                kill(-pid, SIGCONT);
            }
        }
        if (iout >= 0 && p[iout].revents) relay_output(&r, &r.out, 'o'), quiet_at = now + DRAIN_MS;
        if (ierr >= 0 && p[ierr].revents) relay_output(&r, &r.err, 'e'), quiet_at = now + DRAIN_MS;
        if (iin >= 0 && p[iin].revents) write_pending(&r);
        if (p[isig].revents) {
            struct signalfd_siginfo info;
            while (read(signal_fd, &info, sizeof info) > 0) {}
            if (!exited && waitpid(pid, &wstatus, WNOHANG) == pid) {
                exited = 1;
                kill_at = 0;
                drain_until = now + DRAIN_MOST_MS;
                quiet_at = now + DRAIN_MS;
            }
        }
        if (exited && r.out < 0 && r.err < 0) break;
    }
    if (!exited) waitpid(pid, &wstatus, 0);
    if (agent_gone) return;
    char ended[32];
    int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    send_frame(conn, 'x', ended, (size_t)snprintf(ended, sizeof ended, "%d %d", code, sig));
    linger(conn);
}

/* ---- attach: the job's own command's terminal or stdin ------------------------------------ */

static void handle_attach(int conn, char *req, uint32_t len, int master, int stdin_w) {
    char *cursor = req, *end = req + len, *field;
    unsigned rows = 0, cols = 0;
    while ((field = next_field(&cursor, end))) {
        if (!strncmp(field, "rows=", 5)) rows = (unsigned)atoi(field + 5);
        else if (!strncmp(field, "cols=", 5)) cols = (unsigned)atoi(field + 5);
    }
    struct relay r = {.conn = conn, .child = main_pid, .tty = master >= 0, .err = -1};
    if (master >= 0) {
        set_size(master, rows, cols);
        r.out = r.in = master;
        fcntl(master, F_SETFL, O_NONBLOCK);
    } else {
        r.out = -1;
        r.in = stdin_w;
        fcntl(stdin_w, F_SETFL, O_NONBLOCK);
    }
    send_frame(conn, 'p', "", 0);
    for (;;) {
        struct pollfd p[2];
        int n = 0, iconn = -1, iio = -1;
        if (!r.pending) iconn = n, p[n++] = (struct pollfd){conn, POLLIN, 0};
        if (r.tty && r.out >= 0) iio = n, p[n++] = (struct pollfd){r.out, POLLIN | (r.pending ? POLLOUT : 0), 0};
        else if (r.in >= 0 && r.pending) iio = n, p[n++] = (struct pollfd){r.in, POLLOUT, 0};
        if (!n) break;
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (iconn >= 0 && p[iconn].revents && relay_input(&r, r.tty ? main_pid : 0) < 0) break;
        if (iio >= 0 && (p[iio].revents & POLLOUT)) write_pending(&r);
        if (iio >= 0 && r.tty && (p[iio].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[CHUNK];
            ssize_t got = read(r.out, buf, sizeof buf);
            if (got > 0) {
                (void)!write(1, buf, (size_t)got); /* the session goes to the job's journal too */
                send_frame(conn, 'o', buf, (size_t)got);
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                break; /* the command and everything on its terminal ended */
            }
        }
        if (!r.tty && r.in < 0) break; /* stdin given, and closed */
    }
}

/* ---- files: under /work or a volume, never through a link ------------------------------------ */

/* `rel` below the directory `base`, one component at a time, each opened relative to the one
 * before with O_NOFOLLOW: no symlink is followed anywhere (ELOOP), '.', '..' and empty names are
 * refused, and no mount point is crossed (EXDEV). openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
 * RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV) says the same in one call, but the jobs' seccomp filter
 * (systemd 252's @system-service) has no openat2: this walk needs only openat and fstat. */
static int open_beneath(int base, const char *rel, int flags, mode_t mode) {
    struct stat top, st;
    char path[4096];
    if (fstat(base, &top) < 0) return -1;
    if (strlen(rel) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(path, rel);
    int dir = fcntl(base, F_DUPFD_CLOEXEC, 3);
    char *component = path, *slash;
    if (!*component) { /* the base itself */
        int fd = openat(dir, ".", flags | O_CLOEXEC, mode);
        close(dir);
        return fd;
    }
    for (;;) {
        slash = strchr(component, '/');
        if (slash) *slash = 0;
        if (!*component || !strcmp(component, ".") || !strcmp(component, "..")) {
            close(dir);
            errno = EXDEV;
            return -1;
        }
        if (!slash) break;
        if (fstatat(dir, component, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISLNK(st.st_mode)) {
            if (S_ISLNK(st.st_mode)) errno = ELOOP;
            close(dir);
            return -1;
        }
        int next = openat(dir, component, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(dir);
        if (next < 0) return -1;
        if (fstat(next, &st) < 0 || st.st_dev != top.st_dev) {
            close(next);
            errno = EXDEV;
            return -1;
        }
        dir = next;
        component = slash + 1;
    }
    if (fstatat(dir, component, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
        !(flags & O_CREAT)) {
        close(dir);
        errno = ELOOP;
        return -1;
    }
    int fd = openat(dir, component, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    int e = errno;
    close(dir);
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != top.st_dev)) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    errno = e;
    return fd;
}

/* "/work", or "/volumes/NAME" of letters, digits and '-': nothing else is a base. */
static int open_base(const char *base) {
    int ok = !strcmp(base, "/work");
    if (!strncmp(base, "/volumes/", 9) && base[9]) {
        ok = 1;
        for (const char *c = base + 9; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) ok = 0;
    }
    if (!ok) {
        errno = EXDEV;
        return -1;
    }
    return open(base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static char kind_of(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return 'f';
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFIFO: return 'p';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    case S_IFSOCK: return 's';
    default: return '?';
    }
}

/* One entry: name, kind, mode, size, mtime, links, link target; NUL-separated. */
static void send_entry(int conn, const char *name, const struct stat *st, int dirfd) {
    char target[4096] = "";
    if (S_ISLNK(st->st_mode) && dirfd >= 0) {
        ssize_t n = readlinkat(dirfd, name, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
    }
    size_t nlen = strlen(name), tlen = strlen(target);
    char *buf = malloc(nlen + tlen + 128);
    if (!buf) return;
    int head = snprintf(buf, 128 + nlen, "%s%c%c%c%o%c%lld%c%lld.%09ld%c%lu%c", name, 0,
                        kind_of(st->st_mode), 0, (unsigned)(st->st_mode & 07777), 0,
                        (long long)st->st_size, 0, (long long)st->st_mtim.tv_sec,
                        st->st_mtim.tv_nsec, 0, (unsigned long)st->st_nlink, 0);
    memcpy(buf + head, target, tlen);
    send_frame(conn, 'N', buf, (size_t)head + tlen);
    free(buf);
}

/* Split "a/b/c" into its parent "a/b" (in place) and "c"; "c" has "" as its parent. */
static const char *split_last(char *rel) {
    char *slash = strrchr(rel, '/');
    if (!slash) return rel[0] ? rel : NULL;
    *slash = 0;
    return slash + 1;
}

/* The reason only: the agent says which request and path it was. */
static void file_error(int conn, const char *what, const char *path) {
    int e = errno;
    (void)what;
    (void)path;
    send_error(conn, errno_code(e), "%s", strerror(e));
}

static void file_stat(int conn, int base, char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s", rel);
    struct stat st;
    const char *name = split_last(rel);
    if (!name) { /* the base itself */
        if (fstat(base, &st) < 0) return file_error(conn, "stat", path);
        send_entry(conn, ".", &st, -1);
        return;
    }
    int dir = open_beneath(base, name == rel ? "" : rel, O_PATH | O_DIRECTORY, 0);
    if (dir < 0 || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return file_error(conn, "stat", path);
    send_entry(conn, name, &st, dir);
    close(dir);
}

static void file_list(int conn, int base, const char *rel) {
    int fd = open_beneath(base, rel, O_RDONLY | O_DIRECTORY, 0);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (!dir) return file_error(conn, "list", rel);
    struct dirent *d;
    while ((d = readdir(dir))) {
        if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
        struct stat st;
        if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* gone meanwhile */
        send_entry(conn, d->d_name, &st, fd);
    }
    closedir(dir);
    send_frame(conn, '.', "", 0);
}

static void file_read(int conn, int base, const char *rel) {
    /* O_NONBLOCK: a FIFO opens without waiting for a writer, and is refused below */
    int fd = open_beneath(base, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) return file_error(conn, "read", rel);
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        if (S_ISDIR(st.st_mode)) return send_error(conn, "EISDIR", "a directory");
        return send_error(conn, "FTYPE", "not a regular file");
    }
    if (st.st_nlink > 1) {
        close(fd);
        return send_error(conn, "NLINK", "a hard link (%lu names)", (unsigned long)st.st_nlink);
    }
    fcntl(fd, F_SETFL, 0);
    send_entry(conn, rel, &st, -1);
    char buf[CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            return file_error(conn, "read", rel);
        }
        if (n == 0) break;
        if (send_frame(conn, 'o', buf, (size_t)n) < 0) _exit(0);
    }
    close(fd);
    send_frame(conn, 'K', "", 0);
}

/* A name beside `name` in the same directory, for writing before the rename. */
static void temporary_name(char *out, size_t size, const char *name) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(out, size, ".%.200s.joblet-%d-%ld", name, getpid(), now.tv_nsec);
}

static int replaceable(int dir, const char *name) {
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return 0;
    }
    return 1;
}

/* Data frames until 'd', into a new file renamed into place at the end: nothing half-written. */
static void file_write(int conn, int base, char *rel, mode_t mode) {
    char path[4096], tmp[256];
    snprintf(path, sizeof path, "%s", rel);
    const char *name = split_last(rel);
    int dir = name ? open_beneath(base, name == rel ? "" : rel, O_PATH | O_DIRECTORY, 0) : -1;
    if (!name) errno = EISDIR;
    int fd = -1, failed = 0, e = 0;
    if (dir >= 0) {
        temporary_name(tmp, sizeof tmp, name);
        fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        failed = 1;
        e = errno;
    }
    unsigned long long total = 0;
    for (;;) { /* read every data frame, even after a failure: the stream stays in step */
        char type, *data;
        uint32_t len;
        if (recv_frame(conn, &type, &data, &len, MAX_DATA) < 0) {
            if (fd >= 0) unlinkat(dir, tmp, 0);
            _exit(0); /* the agent went away: nothing of it stays */
        }
        if (type == 'd') {
            free(data);
            break;
        }
        if (!failed && type == 'i' && write_full(fd, data, len) < 0) {
            failed = 1;
            e = errno;
        }
        total += len;
        free(data);
    }
    if (!failed && (fchmod(fd, mode & 0777) < 0 || close(fd) < 0)) failed = 1, e = errno, fd = -1;
    else if (!failed) fd = -1;
    if (!failed && (!replaceable(dir, name) || renameat(dir, tmp, dir, name) < 0)) failed = 1, e = errno;
    if (failed) {
        if (fd >= 0) close(fd);
        if (dir >= 0) unlinkat(dir, tmp, 0);
        errno = e;
        file_error(conn, "write", path);
    } else {
        char done[32];
        send_frame(conn, 'K', done, (size_t)snprintf(done, sizeof done, "%llu", total));
    }
    if (dir >= 0) close(dir);
}

static void file_mkdir(int conn, int base, char *rel, mode_t mode) {
    char path[4096];
    snprintf(path, sizeof path, "%s", rel);
    const char *name = split_last(rel);
    struct stat st;
    int dir = name ? open_beneath(base, name == rel ? "" : rel, O_PATH | O_DIRECTORY, 0) : -1;
    if (!name) { /* the base itself exists */
        send_frame(conn, 'K', "", 0);
        return;
    }
    if (dir < 0) return file_error(conn, "mkdir", path);
    if (mkdirat(dir, name, mode & 0777) < 0) {
        if (errno != EEXIST || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
            if (errno == 0) errno = EEXIST;
            close(dir);
            return file_error(conn, "mkdir", path);
        }
    }
    close(dir);
    send_frame(conn, 'K', "", 0);
}

static void file_symlink(int conn, int base, char *rel, const char *target) {
    char path[4096], tmp[256];
    snprintf(path, sizeof path, "%s", rel);
    const char *name = split_last(rel);
    int dir = name ? open_beneath(base, name == rel ? "" : rel, O_PATH | O_DIRECTORY, 0) : -1;
    if (!name) errno = EEXIST;
    if (dir < 0) return file_error(conn, "symlink", path);
    temporary_name(tmp, sizeof tmp, name);
    if (symlinkat(target, dir, tmp) < 0) {
        close(dir);
        return file_error(conn, "symlink", path);
    }
    if (!replaceable(dir, name) || renameat(dir, tmp, dir, name) < 0) {
        int e = errno;
        unlinkat(dir, tmp, 0);
        close(dir);
        errno = e;
        return file_error(conn, "symlink", path);
    }
    close(dir);
    send_frame(conn, 'K', "", 0);
}

/* File operations, one request after another until the agent closes the connection. */
static void handle_files(int conn, char type, char *req, uint32_t len) {
    umask(0); /* modes are the agent's, exactly */
    for (;;) {
        char *cursor = req, *end = req + len;
        const char *base_path = next_field(&cursor, end);
        char *rel = next_field(&cursor, end);
        char *extra = next_field(&cursor, end);
        int base = base_path ? open_base(base_path) : -1;
        if (!base_path || !rel) {
            send_error(conn, "EINVAL", "a file request needs a base and a path");
        } else if (base < 0) {
            file_error(conn, "open", base_path);
        } else {
            mode_t mode = extra ? (mode_t)strtoul(extra, NULL, 8) : 0644;
            switch (type) {
            case 'S': file_stat(conn, base, rel); break;
            case 'L': file_list(conn, base, rel); break;
            case 'R': file_read(conn, base, rel); break;
            case 'W': file_write(conn, base, rel, mode); break;
            case 'M': file_mkdir(conn, base, rel, mode); break;
            case 'Y':
                if (extra) file_symlink(conn, base, rel, extra);
                else send_error(conn, "EINVAL", "a symlink needs a target");
                break;
            default: send_error(conn, "EINVAL", "unknown request '%c'", type);
            }
        }
        if (base >= 0) close(base);
        free(req);
        if (recv_frame(conn, &type, &req, &len, MAX_REQUEST) < 0) return;
    }
}

/* ---- the main process ---------------------------------------------------------------------- */

static void serve_connection(int conn) {
    struct pollfd p = {conn, POLLIN, 0};
    char type, *req;
    uint32_t len;
    if (poll(&p, 1, FIRST_FRAME_MS) <= 0 || recv_frame(conn, &type, &req, &len, MAX_REQUEST) < 0) {
        close(conn);
        return;
    }
    int attach = type == 'a';
    if (attach && attach_pid > 0) {
        send_error(conn, "EBUSY", "the job's command is attached elsewhere");
    } else if (attach && main_master < 0 && main_stdin < 0) {
        send_error(conn, "ENOTTY", "the job's command has no terminal or stdin to attach to%s",
                   main_pid > 0 ? " (run it with -i or -t), or its stdin was given already" : "");
    } else if (nhandlers >= MAX_HANDLERS) {
        send_error(conn, "EAGAIN", "%d connections at once already", nhandlers);
    } else {
        pid_t pid = fork();
        if (pid == 0) {
            close(listen_fd);
            if (!attach) {
                if (main_master >= 0) close(main_master);
                if (main_stdin >= 0) close(main_stdin);
            }
            if (type == 'x') handle_exec(conn, req, len);
            else if (attach) handle_attach(conn, req, len, main_master, main_stdin);
            else handle_files(conn, type, req, len);
            _exit(0);
        }
        if (pid > 0) {
            handlers[nhandlers++] = pid;
            if (attach) {
                attach_pid = pid;
                if (main_stdin >= 0) { /* the attach has it now: its end is the command's EOF */
                    close(main_stdin);
                    main_stdin = -1;
                }
            }
        } else {
            send_error(conn, errno_code(errno), "cannot fork: %s", strerror(errno));
        }
    }
    free(req);
    close(conn);
}

/* End as the command ended: its status, or its signal where this process may die of it. */
static void end_like(int wstatus) {
    if (WIFEXITED(wstatus)) exit(WEXITSTATUS(wstatus));
    int sig = WTERMSIG(wstatus);
    if (getpid() != 1) { /* PID 1 of a namespace cannot be killed from inside it */
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
    }
    exit(128 + sig);
}

static void usage(void) {
    fputs("usage: joblet-init [--tty] [--stdin] [--serve IDLE_SECONDS] [--] PATH ARGV0 [ARGS...]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    int tty = 0, stdin_pipe = 0, i = 1;
    long serve_idle = -1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "--tty")) tty = 1;
        else if (!strcmp(argv[i], "--stdin")) stdin_pipe = 1;
        else if (!strcmp(argv[i], "--serve") && i + 1 < argc) serve_idle = atol(argv[++i]);
        else usage();
    }
    if (serve_idle < 0 && argc - i < 2) usage();

    /* Non-dumpable: nothing of the job (same user) may ptrace it or read its /proc entries. */
    prctl(PR_SET_DUMPABLE, 0);
    if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);
    const char *fds = getenv("LISTEN_FDS"), *fd_pid = getenv("LISTEN_PID");
    if (fds && fd_pid && !strcmp(fds, "1") && atol(fd_pid) == (long)getpid()) {
        listen_fd = 3;
        fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
    }
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");

    int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM};
    sigemptyset(&handled);
    sigaddset(&handled, SIGCHLD);
    for (size_t k = 0; k < sizeof forwarded / sizeof *forwarded; k++) sigaddset(&handled, forwarded[k]);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    signal(SIGPIPE, SIG_IGN); /* a connection the agent closed is an error to see, not a death */
    signal_fd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0) {
        perror("joblet-init: signalfd");
        return 1;
    }

    if (serve_idle < 0) {
        char name[128];
        int stdin_r = -1;
        if (tty && (main_master = open_terminal(name, sizeof name)) < 0) {
            perror("joblet-init: no terminal");
            return 1;
        }
        if (!tty && stdin_pipe) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0) {
                perror("joblet-init: pipe");
                return 1;
            }
            stdin_r = p[0];
            main_stdin = p[1];
        }
        main_pid = fork();
        if (main_pid < 0) {
            perror("joblet-init: fork");
            return 1;
        }
        if (main_pid == 0) {
            as_fresh_process();
            if (tty) take_terminal(name);
            else if (stdin_r >= 0) dup2(stdin_r, 0);
            execv(argv[i], argv + i + 1);
            int e = errno;
            fprintf(stderr, "joblet-init: cannot execute %s: %s\n", argv[i], strerror(e));
            _exit(e == ENOENT ? 127 : 126);
        }
        if (stdin_r >= 0) close(stdin_r);
    }

    int main_status = 0, main_done = 0;
    struct timespec idle_since, done_at = {0};
    clock_gettime(CLOCK_MONOTONIC, &idle_since);
    for (;;) {
        struct pollfd p[2] = {{signal_fd, POLLIN, 0}, {listen_fd, POLLIN, 0}};
        int timeout = -1;
        if (main_done) timeout = 100;
        else if (serve_idle >= 0) timeout = 1000;
        int ready = poll(p, listen_fd >= 0 && !main_done ? 2 : 1, timeout);
        if (ready < 0 && errno != EINTR) return 1;
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(signal_fd, &info, sizeof info) == sizeof info) {
                if (info.ssi_signo == SIGCHLD) continue;
                /* Stop's SIGTERM from PID 1 (pid 0 here when it is outside the job's PID
                 * namespace) reaches every process of the job's cgroup (KillMode=control-group):
                 * the command has it already, and a second SIGTERM is "quit now" to many
                 * programs. Every other signal is passed on (`systemctl kill --kill-whom=main`). */
                int from_pid1 = info.ssi_code == SI_USER && (info.ssi_pid == 0 || info.ssi_pid == 1);
                int stop_signal = from_pid1 && info.ssi_signo == SIGTERM;
                if (main_pid > 0 && !main_done && !stop_signal) kill(main_pid, (int)info.ssi_signo);
            }
            int wstatus;
            pid_t pid;
            while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
                if (pid == main_pid) {
                    main_status = wstatus;
                    main_done = 1;
                    clock_gettime(CLOCK_MONOTONIC, &done_at);
                } else if (forget_handler(pid) && pid == attach_pid) {
                    attach_pid = 0;
                } /* else an orphan of the job's, reaped */
            }
            clock_gettime(CLOCK_MONOTONIC, &idle_since);
        }
        if (listen_fd >= 0 && !main_done && ready > 0 && (p[1].revents & POLLIN)) {
            int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (conn >= 0) serve_connection(conn);
            clock_gettime(CLOCK_MONOTONIC, &idle_since);
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (main_done) {
            /* its terminal's last output reaches the attached client, then the job ends */
            long waited = (now.tv_sec - done_at.tv_sec) * 1000 + (now.tv_nsec - done_at.tv_nsec) / 1000000;
            if (attach_pid <= 0 || main_master < 0 || waited >= ATTACH_FLUSH_MS) end_like(main_status);
        }
        if (serve_idle >= 0 && nhandlers == 0 && now.tv_sec - idle_since.tv_sec >= serve_idle) return 0;
    }
}
