/* client: the integration tests' side of the wire — partyd as a child
 * process with its output captured by a reader thread, raw TCP connections,
 * and small HTTP/1.1 and WebSocket clients. The WebSocket code follows RFC
 * 6455 directly and shares nothing with src/ws.c. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define LISTEN_NEEDLE "listening on http://127.0.0.1:"
#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 15000
#define MAX_OPEN_CONNS 512

int test_slow_factor(void) {
    const char *env = getenv("PARTYD_WRAPPER");
    return env != NULL && env[0] != '\0' ? 4 : 1;
}

int64_t test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline) {
    int64_t left = deadline - test_now_ms();
    return left < 0 ? 0 : (int)left;
}

/* ---- partyd as a child process ---- */

struct partyd {
    pid_t pid;
    int port;
    int reaped;
    int status;
    char dir[64];
    int out_fd, err_fd;
    pthread_t thread;
    int thread_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *out, *err; /* captured output, NUL-terminated */
    size_t out_len, out_cap, err_len, err_cap;
    int out_eof, err_eof;
};

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t new_cap = (*cap ? *cap * 2 : 4096);
        char *grown;
        while (new_cap < *len + n + 1)
            new_cap *= 2;
        grown = realloc(*buf, new_cap);
        if (grown == NULL)
            return; /* the output is for diagnostics: losing some is acceptable */
        *buf = grown;
        *cap = new_cap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Copies the child's stdout and stderr into memory until both close, so the
 * child never blocks on a full pipe and waiters can be woken per line. */
static void *reader_main(void *arg) {
    partyd *d = arg;
    char chunk[4096];

    for (;;) {
        struct pollfd p[2];
        int i, out_eof, err_eof;

        pthread_mutex_lock(&d->lock);
        out_eof = d->out_eof;
        err_eof = d->err_eof;
        pthread_mutex_unlock(&d->lock);
        if (out_eof && err_eof)
            break;
        p[0].fd = out_eof ? -1 : d->out_fd;
        p[1].fd = err_eof ? -1 : d->err_fd;
        p[0].events = p[1].events = POLLIN;
        p[0].revents = p[1].revents = 0;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (i = 0; i < 2; i++) {
            ssize_t n;
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            n = read(p[i].fd, chunk, sizeof(chunk));
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            pthread_mutex_lock(&d->lock);
            if (n > 0 && i == 0)
                append(&d->out, &d->out_len, &d->out_cap, chunk, (size_t)n);
            else if (n > 0)
                append(&d->err, &d->err_len, &d->err_cap, chunk, (size_t)n);
            else if (i == 0)
                d->out_eof = 1;
            else
                d->err_eof = 1;
            pthread_cond_broadcast(&d->cond);
            pthread_mutex_unlock(&d->lock);
        }
    }
    pthread_mutex_lock(&d->lock);
    d->out_eof = d->err_eof = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Waits on d->cond until the deadline; 0 when it passed. Called locked. */
static int cond_wait_until(partyd *d, int64_t deadline) {
    struct timespec ts;
    if (test_now_ms() >= deadline)
        return 0;
    ts.tv_sec = (time_t)(deadline / 1000);
    ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
    return pthread_cond_timedwait(&d->cond, &d->lock, &ts) != ETIMEDOUT || test_now_ms() < deadline;
}

/* Every partyd not yet freed, so that one a failed test could not stop
 * (the failure leaves by longjmp) is killed, by its pid, when the test
 * program exits. */
static partyd *spawned[64];
/* Group teardowns whose partyd did not exit 0 (e.g. ASan or valgrind found
 * a leak at its exit). cmocka 1.1 reports a failed group teardown but does
 * not count it in its result, so the exit status is fixed up at exit. */
static int failed_group_stops;

static void spawned_free_all(void) {
    size_t i;
    for (i = 0; i < sizeof(spawned) / sizeof(spawned[0]); i++)
        if (spawned[i] != NULL)
            partyd_free(spawned[i]);
    if (failed_group_stops > 0) {
        fprintf(stderr, "%d partyd group teardown(s) failed: exiting with status 1\n",
                failed_group_stops);
        fflush(NULL);
        _exit(1);
    }
}

static void spawned_track(partyd *d, int on) {
    static int registered;
    size_t i;
    if (!registered) {
        atexit(spawned_free_all);
        registered = 1;
    }
    for (i = 0; i < sizeof(spawned) / sizeof(spawned[0]); i++) {
        if (on && spawned[i] == NULL) {
            spawned[i] = d;
            return;
        }
        if (!on && spawned[i] == d) {
            spawned[i] = NULL;
            return;
        }
    }
}

/* PARTYD_WRAPPER, e.g. "valgrind --leak-check=full --error-exitcode=99":
 * a command (found in PATH) and its arguments, split at spaces, put in
 * front of partyd's command line. Parsed before fork (nothing but exec
 * runs in the child). Returns the number of words put in words, 0 when
 * unset; the program's path goes to path. */
#define MAX_WRAPPER_WORDS 24

static size_t wrapper_words(char *copy, size_t cap, const char **words, char *path,
                            size_t path_cap) {
    const char *env = getenv("PARTYD_WRAPPER");
    size_t n = 0;
    char *p, *save = NULL;

    if (env == NULL || env[0] == '\0')
        return 0;
    /* Set but unusable: running partyd bare would pass every test with
     * nothing checked, so stop here. */
    if (strlen(env) >= cap) {
        fprintf(stderr, "PARTYD_WRAPPER is %zu bytes or longer; refusing to run without it\n", cap);
        exit(1);
    }
    snprintf(copy, cap, "%s", env);
    for (p = strtok_r(copy, " ", &save); p != NULL && n < MAX_WRAPPER_WORDS;
         p = strtok_r(NULL, " ", &save))
        words[n++] = p;
    if (n == 0)
        return 0; /* only spaces: unset */
    if (strchr(words[0], '/') != NULL) {
        snprintf(path, path_cap, "%s", words[0]);
    } else {
        const char *dirs = getenv("PATH");
        char list[4096], *dir, *save_dir = NULL;
        path[0] = '\0';
        snprintf(list, sizeof(list), "%s", dirs != NULL ? dirs : "/usr/bin:/bin");
        for (dir = strtok_r(list, ":", &save_dir); dir != NULL;
             dir = strtok_r(NULL, ":", &save_dir)) {
            snprintf(path, path_cap, "%s/%s", dir, words[0]);
            if (access(path, X_OK) == 0)
                break;
            path[0] = '\0';
        }
        if (path[0] == '\0') {
            fprintf(stderr, "PARTYD_WRAPPER: %s is not in PATH; refusing to run without it\n",
                    words[0]);
            exit(1);
        }
    }
    return n;
}

partyd *partyd_spawn(const char *const *extra_args) {
    static const char *const base[] = {
        PARTYD_PATH,
        "--port",
        "0",
        "--data",
        NULL,
        "--party",
        "probe=" PROBE_PARTY_PATH,
        "--party",
        "greeter=" GREETER_PARTY_PATH,
    };
    enum { N_BASE = sizeof(base) / sizeof(base[0]), DATA_ARG = 4 };
    const char *argv[MAX_WRAPPER_WORDS + N_BASE + 32 + 1];
    char wrapper[1024], wrapper_path[1024];
    const char *exec_path = PARTYD_PATH;
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    pthread_condattr_t attr;
    size_t n = 0, i;
    pid_t parent;
    partyd *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->pid = -1;
    d->out_fd = d->err_fd = -1;
    snprintf(d->dir, sizeof(d->dir), "/tmp/partyd-it-XXXXXX");
    if (mkdtemp(d->dir) == NULL) {
        d->dir[0] = '\0';
        goto fail;
    }
    n = wrapper_words(wrapper, sizeof(wrapper), argv, wrapper_path, sizeof(wrapper_path));
    if (n > 0)
        exec_path = wrapper_path;
    for (i = 0; i < N_BASE; i++)
        argv[n++] = i == DATA_ARG ? d->dir : base[i];
    for (i = 0; extra_args != NULL && extra_args[i] != NULL && i < 32; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;

    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0)
        goto fail;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &attr);
    pthread_condattr_destroy(&attr);

    parent = getpid();
    d->pid = fork();
    if (d->pid < 0)
        goto fail;
    if (d->pid == 0) {
        /* Only async-signal-safe calls between fork and exec. If the test
         * program dies without stopping it (a crash), partyd dies too. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        if (dup2(out_pipe[1], STDOUT_FILENO) < 0 || dup2(err_pipe[1], STDERR_FILENO) < 0)
            _exit(127);
        execv(exec_path, (char *const *)argv);
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    d->out_fd = out_pipe[0];
    d->err_fd = err_pipe[0];
    if (pthread_create(&d->thread, NULL, reader_main, d) != 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->reaped = 1;
        goto fail;
    }
    d->thread_running = 1;
    spawned_track(d, 1);
    return d;

fail:
    for (i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    d->out_fd = d->err_fd = -1;
    partyd_free(d);
    return NULL;
}

partyd *partyd_start(const char *const *extra_args) {
    partyd *d = partyd_spawn(extra_args);
    int64_t deadline = test_now_ms() + START_TIMEOUT_MS;
    const char *line = NULL;

    if (d == NULL)
        return NULL;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        line = d->err != NULL ? strstr(d->err, LISTEN_NEEDLE) : NULL;
        /* The line is written whole, but wait for its end all the same. */
        if (line != NULL && strchr(line, '\n') != NULL)
            break;
        line = NULL;
        if (d->err_eof || !cond_wait_until(d, deadline))
            break;
    }
    if (line != NULL)
        d->port = atoi(line + strlen(LISTEN_NEEDLE));
    pthread_mutex_unlock(&d->lock);
    if (line == NULL || d->port <= 0) {
        char *err = partyd_stderr(d);
        fprintf(stderr, "partyd did not start listening; its stderr:\n%s\n", err ? err : "");
        free(err);
        partyd_free(d);
        return NULL;
    }
    return d;
}

partyd *partyd_start_env(const char *const *extra_args, const char *env_on) {
    partyd *d;
    if (env_on != NULL)
        setenv(env_on, "1", 1);
    d = partyd_start(extra_args);
    if (env_on != NULL)
        unsetenv(env_on);
    return d;
}

int partyd_group_start(partyd **server, int *port, const char *const *extra_args,
                       const char *env_on) {
    *server = partyd_start_env(extra_args, env_on);
    if (*server == NULL)
        return -1;
    *port = partyd_port(*server);
    return 0;
}

int partyd_pid(const partyd *d) {
    return (int)d->pid;
}

int partyd_port(const partyd *d) {
    return d->port;
}

int partyd_wait_exit(partyd *d, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    int closed, st;

    if (d->reaped)
        return d->status;
    /* The pipes reach EOF when the process's file table goes away, that is
     * when it exits: then waitpid does not block for long. */
    pthread_mutex_lock(&d->lock);
    while (!(d->out_eof && d->err_eof))
        if (!cond_wait_until(d, deadline))
            break;
    closed = d->out_eof && d->err_eof;
    pthread_mutex_unlock(&d->lock);
    if (!closed)
        return TC_TIMEOUT;
    while (waitpid(d->pid, &st, 0) < 0)
        if (errno != EINTR)
            return TC_TIMEOUT;
    d->reaped = 1;
    d->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (d->thread_running) {
        pthread_join(d->thread, NULL);
        d->thread_running = 0;
    }
    return d->status;
}

int partyd_stop(partyd *d) {
    int status;
    if (d->reaped)
        return d->status;
    kill(d->pid, SIGTERM);
    status = partyd_wait_exit(d, STOP_TIMEOUT_MS);
    if (status == TC_TIMEOUT) {
        fprintf(stderr, "partyd (pid %d) ignored SIGTERM for %d ms; killing it\n", (int)d->pid,
                STOP_TIMEOUT_MS);
        kill(d->pid, SIGKILL);
        status = partyd_wait_exit(d, STOP_TIMEOUT_MS);
    }
    return status;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void test_remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void partyd_free(partyd *d) {
    if (d == NULL)
        return;
    spawned_track(d, 0);
    if (d->pid > 0 && !d->reaped) {
        kill(d->pid, SIGKILL);
        partyd_wait_exit(d, STOP_TIMEOUT_MS);
    }
    if (d->thread_running)
        pthread_join(d->thread, NULL);
    if (d->out_fd >= 0)
        close(d->out_fd);
    if (d->err_fd >= 0)
        close(d->err_fd);
    if (d->dir[0] != '\0')
        test_remove_tree(d->dir);
    if (d->pid != -1 || d->thread_running) {
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->lock);
    }
    free(d->out);
    free(d->err);
    free(d);
}

int partyd_wait_stderr(partyd *d, const char *needle, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    int found;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        found = d->err != NULL && strstr(d->err, needle) != NULL;
        if (found || d->err_eof || !cond_wait_until(d, deadline))
            break;
    }
    found = d->err != NULL && strstr(d->err, needle) != NULL;
    pthread_mutex_unlock(&d->lock);
    return found;
}

static char *copy_locked(partyd *d, const char *text) {
    char *copy;
    pthread_mutex_lock(&d->lock);
    copy = strdup(text != NULL ? text : "");
    pthread_mutex_unlock(&d->lock);
    return copy;
}

char *partyd_stderr(partyd *d) {
    return copy_locked(d, d->err);
}

char *partyd_stdout(partyd *d) {
    return copy_locked(d, d->out);
}

int partyd_run_to_exit(const char *const *extra_args, char **out, char **err) {
    partyd *d = partyd_spawn(extra_args);
    int status;

    assert_non_null(d);
    status = partyd_wait_exit(d, TC_TIMEOUT_MS);
    if (out != NULL)
        *out = partyd_stdout(d);
    *err = partyd_stderr(d);
    partyd_free(d);
    if (status == TC_TIMEOUT)
        fail_msg("partyd did not exit; stderr:\n%s", *err);
    return status;
}

long partyd_serving_pid(partyd *d) {
    static const char mark[] = "; serving (pid ";
    char *log = partyd_stderr(d), *at = strstr(log, mark);
    long pid = at != NULL ? strtol(at + sizeof(mark) - 1, NULL, 10) : 0;
    free(log);
    return pid;
}

int partyd_stop_upgraded(partyd *d) {
    long pid = partyd_serving_pid(d);

    if (pid <= 0 || pid == partyd_pid(d))
        fail_msg("no new process serves after the upgrade");
    kill((pid_t)pid, SIGTERM);
    return partyd_wait_exit(d, 60000);
}

/* The directories of test_hooks_group_setup. */
static char hooks_tmp[] = "/tmp/partyd-hooks-XXXXXX";
static char hooks_dir[sizeof(hooks_tmp) + 8];

int test_hooks_group_setup(void **state) {
    (void)state;
    if (mkdtemp(hooks_tmp) == NULL)
        return -1;
    snprintf(hooks_dir, sizeof(hooks_dir), "%s/hooks", hooks_tmp);
    if (mkdir(hooks_dir, 0700) != 0)
        return -1;
    setenv("PARTYD_TEST_HOOKS", hooks_dir, 1);
    return 0;
}

int test_hooks_group_teardown(void **state) {
    (void)state;
    unsetenv("PARTYD_TEST_HOOKS");
    test_remove_tree(hooks_tmp);
    return 0;
}

const char *test_tmp_dir(void) {
    return hooks_tmp;
}

void test_hook_set(const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", hooks_dir, name);
    test_write_file(path, text);
}

void test_hook_clear(const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", hooks_dir, name);
    unlink(path);
}

partyd *partyd_expect_start(const char *const *extra_args, partyd **served) {
    partyd *d = partyd_start(extra_args);
    assert_non_null(d);
    *served = d;
    return d;
}

void partyd_expect_clean_stop(partyd **served, int upgraded) {
    partyd *d = *served;
    if (upgraded) {
        assert_int_equal(partyd_stop_upgraded(d), 0);
    } else {
        assert_int_equal(partyd_stop(d), 0);
    }
    partyd_expect_no_sanitizer_report(d);
    *served = NULL;
    partyd_free(d);
}

/* The pid in the log line of a new process that serves before it says
 * adopted (test hook hold-adopted); 0 if there is none. */
static long held_in_log(const char *log) {
    static const char mark[] = "upgrade: test hook: process ";
    const char *at;
    for (at = strstr(log, mark); at != NULL; at = strstr(at + 1, mark)) {
        char *end;
        long pid = strtol(at + sizeof(mark) - 1, &end, 10);
        if (strncmp(end, " serves before it says adopted", 30) == 0)
            return pid;
    }
    return 0;
}

long partyd_held_pid(partyd *d) {
    char *log;
    long pid;

    assert_true(partyd_wait_stderr(d, "serves before it says adopted", 60000));
    log = partyd_stderr(d);
    pid = held_in_log(log);
    free(log);
    assert_true(pid > 0 && pid != partyd_pid(d));
    return pid;
}

void partyd_upgrade_cleanup(partyd **served, const char *hook) {
    partyd *d = *served;

    tconn_close_all();
    if (d != NULL) {
        long serving = partyd_serving_pid(d), held;
        char *log = partyd_stderr(d);
        /* A new process still held: a check failed before the test ended
         * it. */
        held = strstr(log, "serves as before") == NULL ? held_in_log(log) : 0;
        free(log);
        if (serving > 0 && serving != partyd_pid(d))
            kill((pid_t)serving, SIGKILL);
        if (held > 0 && held != partyd_pid(d))
            kill((pid_t)held, SIGKILL);
        partyd_stop(d);
        partyd_free(d);
        *served = NULL;
    }
    if (hook != NULL)
        test_hook_clear(hook);
}

void partyd_expect_no_sanitizer_report(partyd *d) {
    char *log = partyd_stderr(d);
    int found = strstr(log, "Sanitizer") != NULL || strstr(log, "runtime error") != NULL;
    if (found)
        fprintf(stderr, "partyd's stderr:\n%s\n", log);
    free(log);
    if (found)
        fail_msg("partyd's stderr holds a sanitizer report (above)");
}

void partyd_signal(partyd *d, int sig) {
    if (d->pid > 0 && !d->reaped)
        kill(d->pid, sig);
}

int partyd_group_stop(partyd *d) {
    int status;
    if (d == NULL)
        return -1;
    tconn_close_all();
    status = partyd_stop(d);
    if (status != 0) {
        char *err = partyd_stderr(d);
        fprintf(stderr, "partyd exited with status %d; its stderr:\n%s\n", status,
                err != NULL ? err : "");
        free(err);
        failed_group_stops++;
    }
    partyd_free(d);
    return status == 0 ? 0 : -1;
}

/* ---- raw TCP ---- */

/* Connections still open, so a group teardown can close what a failed test
 * (which leaves through longjmp) could not. */
static tconn *open_conns[MAX_OPEN_CONNS];

static void track(tconn *c, int on) {
    size_t i;
    for (i = 0; i < MAX_OPEN_CONNS; i++) {
        if (on && open_conns[i] == NULL) {
            open_conns[i] = c;
            return;
        }
        if (!on && open_conns[i] == c) {
            open_conns[i] = NULL;
            return;
        }
    }
}

tconn *tconn_open(int port, int rcvbuf) {
    return tconn_open_from(port, rcvbuf, NULL);
}

tconn *tconn_open_from(int port, int rcvbuf, const char *source) {
    struct sockaddr_in addr;
    tconn *c;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return NULL;
    if (source != NULL) {
        struct sockaddr_in from;
        memset(&from, 0, sizeof(from));
        from.sin_family = AF_INET;
        if (inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0) {
            close(fd);
            return NULL;
        }
    }
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    track(c, 1);
    return c;
}

void tconn_close(tconn *c) {
    if (c == NULL)
        return;
    track(c, 0);
    close(c->fd);
    free(c->buf);
    free(c);
}

void tconn_reset(tconn *c) {
    struct linger lg = {1, 0};
    if (c == NULL)
        return;
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    tconn_close(c);
}

void tconn_close_all(void) {
    size_t i;
    for (i = 0; i < MAX_OPEN_CONNS; i++)
        if (open_conns[i] != NULL)
            tconn_close(open_conns[i]);
}

int tconn_send(tconn *c, const void *data, size_t len) {
    const char *p = data;
    int64_t deadline = test_now_ms() + TC_TIMEOUT_MS;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {c->fd, POLLOUT, 0};
            int left = remaining_ms(deadline);
            if (left == 0 || poll(&pfd, 1, left) == 0)
                return TC_TIMEOUT;
            continue;
        }
        return TC_RESET;
    }
    return 0;
}

int tconn_send_str(tconn *c, const char *s) {
    return tconn_send(c, s, strlen(s));
}

int tconn_fill(tconn *c, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;

    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        char *grown;
        while (cap - c->len < 65536)
            cap *= 2;
        grown = realloc(c->buf, cap);
        if (grown == NULL)
            return TC_RESET;
        c->buf = grown;
        c->cap = cap;
        c->buf[c->len] = '\0';
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n > 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            return (int)n;
        }
        if (n == 0)
            return TC_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            struct pollfd pfd = {c->fd, POLLIN, 0};
            int left = remaining_ms(deadline);
            if (left == 0 || poll(&pfd, 1, left) == 0)
                return TC_TIMEOUT;
            continue;
        }
        return TC_RESET;
    }
}

void tconn_consume(tconn *c, size_t n) {
    if (n >= c->len) {
        c->len = 0;
        return;
    }
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

int tconn_wait_close(tconn *c, int timeout_ms, size_t *discarded) {
    int64_t deadline = test_now_ms() + timeout_ms;
    size_t dropped = c->len;
    int r;

    c->len = 0;
    for (;;) {
        r = tconn_fill(c, remaining_ms(deadline));
        if (r <= 0)
            break;
        dropped += (size_t)r;
        c->len = 0;
    }
    if (discarded != NULL)
        *discarded = dropped;
    return r;
}

/* Fails the current test with a formatted message, freeing owned (may be
 * NULL) first: the failure leaves by longjmp, so nothing after it runs. */
static void fail_freeing(void *owned, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_freeing(void *owned, const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    free(owned);
    fail_msg("%s", message);
}

/* ---- HTTP ---- */

static char *find_head_end(const char *buf, size_t len) {
    size_t i;
    for (i = 0; i + 3 < len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
            return (char *)buf + i;
    return NULL;
}

int http_read_response(tconn *c, int head_request, http_response *res, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    char *end, *line, *save = NULL;
    size_t head_len, body_len = 0;
    int until_eof = 0, r;
    const char *cl;

    memset(res, 0, sizeof(*res));
    while ((end = find_head_end(c->buf, c->len)) == NULL) {
        r = tconn_fill(c, remaining_ms(deadline));
        if (r < 0)
            return r == TC_EOF && c->len > 0 ? TC_BAD : r;
    }
    head_len = (size_t)(end - c->buf);
    res->head = malloc(head_len + 1);
    if (res->head == NULL)
        return TC_RESET;
    memcpy(res->head, c->buf, head_len);
    res->head[head_len] = '\0';
    tconn_consume(c, head_len + 4);

    line = strtok_r(res->head, "\r\n", &save);
    if (line == NULL || strncmp(line, "HTTP/1.1 ", 9) != 0 || strlen(line) < 12)
        goto bad;
    res->status = atoi(line + 9);
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':'), *value;
        if (colon == NULL || res->n_headers == HTTP_MAX_HEADERS)
            goto bad;
        *colon = '\0';
        value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        res->headers[res->n_headers].name = line;
        res->headers[res->n_headers].value = value;
        res->n_headers++;
    }
    if (http_response_header(res, "Transfer-Encoding") != NULL)
        goto bad; /* partyd always sends Content-Length */
    cl = http_response_header(res, "Content-Length");
    if (head_request || res->status < 200 || res->status == 204 || res->status == 304)
        body_len = 0;
    else if (cl != NULL)
        body_len = strtoull(cl, NULL, 10);
    else
        until_eof = 1;
    while (until_eof || c->len < body_len) {
        r = tconn_fill(c, remaining_ms(deadline));
        if (r == TC_EOF && until_eof)
            break;
        if (r < 0) {
            http_response_free(res);
            return r == TC_EOF ? TC_BAD : r;
        }
    }
    if (until_eof)
        body_len = c->len;
    res->body = malloc(body_len + 1);
    if (res->body == NULL) {
        http_response_free(res);
        return TC_RESET;
    }
    if (body_len > 0)
        memcpy(res->body, c->buf, body_len);
    res->body[body_len] = '\0';
    res->body_len = body_len;
    tconn_consume(c, body_len);
    return 0;
bad:
    http_response_free(res);
    return TC_BAD;
}

void http_response_free(http_response *res) {
    free(res->head);
    free(res->body);
    memset(res, 0, sizeof(*res));
}

const char *http_response_header(const http_response *res, const char *name) {
    size_t i;
    for (i = 0; i < res->n_headers; i++)
        if (strcasecmp(res->headers[i].name, name) == 0)
            return res->headers[i].value;
    return NULL;
}

void http_expect_request(int port, const char *method, const char *target, const char *headers,
                         const void *body, size_t body_len, http_response *res) {
    tconn *c = tconn_open(port, 0);
    char head[4096];
    int n, r;

    if (c == NULL)
        fail_msg("cannot connect to 127.0.0.1:%d", port);
    n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s",
                 method, target, headers != NULL ? headers : "");
    if (body != NULL)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    if (tconn_send(c, head, (size_t)n) != 0 || (body_len > 0 && tconn_send(c, body, body_len) != 0))
        fail_msg("%s %s: cannot send the request", method, target);
    r = http_read_response(c, strcmp(method, "HEAD") == 0, res, TC_TIMEOUT_MS);
    tconn_close(c);
    if (r != 0)
        fail_msg("%s %s: no valid response (%d)", method, target, r);
}

void http_expect_get(int port, const char *target, http_response *res) {
    http_expect_request(port, "GET", target, NULL, NULL, 0, res);
}

tconn *http_expect_raw(int port, const char *request, http_response *res) {
    tconn *c = tconn_open(port, 0);
    int r;
    if (c == NULL)
        fail_msg("cannot connect to 127.0.0.1:%d", port);
    if (tconn_send_str(c, request) != 0)
        fail_msg("cannot send the request");
    r = http_read_response(c, strncmp(request, "HEAD ", 5) == 0, res, TC_TIMEOUT_MS);
    if (r != 0)
        fail_msg("no valid response (%d) to: %.200s", r, request);
    return c;
}

/* ---- WebSocket ---- */

static void random_bytes(void *out, size_t len) {
    char *p = out;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
}

/* base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2. */
static void accept_value(const char *key, char out[64]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    char input[128];
    int n = snprintf(input, sizeof(input), "%s%s", key, guid);

    EVP_Digest(input, (size_t)n, digest, &digest_len, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len);
}

int ws_handshake(tconn *c, const char *target, const char *extra_headers, const void *trailing,
                 size_t trailing_len, http_response *res) {
    unsigned char raw_key[16];
    char key[32], expected[64];
    char *req;
    size_t req_len;
    const char *accept;
    int n, r;

    /* Empty until an answer is read, so the caller may free it whatever
     * the result (the request may fail to go out). */
    memset(res, 0, sizeof(*res));
    random_bytes(raw_key, sizeof(raw_key));
    EVP_EncodeBlock((unsigned char *)key, raw_key, sizeof(raw_key));
    accept_value(key, expected);
    req = malloc(4096 + trailing_len);
    if (req == NULL)
        return TC_RESET;
    n = snprintf(req, 4096,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 target, key, extra_headers != NULL ? extra_headers : "");
    req_len = (size_t)n;
    if (trailing_len > 0)
        memcpy(req + req_len, trailing, trailing_len);
    req_len += trailing_len;
    r = tconn_send(c, req, req_len);
    free(req);
    if (r != 0)
        return r;
    r = http_read_response(c, 0, res, TC_TIMEOUT_MS);
    if (r != 0)
        return r;
    if (res->status != 101)
        return res->status;
    accept = http_response_header(res, "Sec-WebSocket-Accept");
    if (accept == NULL || strcmp(accept, expected) != 0)
        return TC_BAD;
    return 0;
}

tconn *ws_open(int port, const char *target) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    int r;

    if (c == NULL)
        fail_msg("cannot connect to 127.0.0.1:%d", port);
    r = ws_handshake(c, target, NULL, NULL, 0, &res);
    if (r != 0) {
        char *body = res.body;
        res.body = NULL;
        http_response_free(&res);
        fail_freeing(body, "WebSocket handshake for %s failed: %d %s", target, r,
                     body != NULL ? body : "");
    }
    http_response_free(&res);
    return c;
}

size_t ws_encode_frame(char *out, uint8_t first_byte, int masked, const void *data, size_t len) {
    unsigned char *p = (unsigned char *)out;
    uint8_t key[4];
    size_t n = 2, i;

    p[0] = first_byte;
    p[1] = masked ? 0x80 : 0;
    if (len < 126) {
        p[1] |= (unsigned char)len;
    } else if (len <= 0xFFFF) {
        p[1] |= 126;
        p[2] = (unsigned char)(len >> 8);
        p[3] = (unsigned char)len;
        n = 4;
    } else {
        p[1] |= 127;
        for (i = 0; i < 8; i++)
            p[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    if (masked) {
        random_bytes(key, 4);
        memcpy(p + n, key, 4);
        n += 4;
    }
    if (len > 0)
        memcpy(p + n, data, len);
    if (masked)
        for (i = 0; i < len; i++)
            p[n + i] ^= key[i & 3];
    return n + len;
}

int ws_send_raw_frame(tconn *c, uint8_t first_byte, int masked, const void *data, size_t len) {
    char *frame = malloc(len + 14);
    size_t n;
    int r;
    if (frame == NULL)
        return TC_RESET;
    n = ws_encode_frame(frame, first_byte, masked, data, len);
    r = tconn_send(c, frame, n);
    free(frame);
    return r;
}

int ws_send_frame(tconn *c, int opcode, int fin, const void *data, size_t len) {
    return ws_send_raw_frame(c, (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F)), 1, data, len);
}

int ws_send_text(tconn *c, const char *text) {
    return ws_send_frame(c, WS_TEXT, 1, text, strlen(text));
}

int ws_send_close(tconn *c, int code, const char *reason) {
    char payload[130];
    size_t len = 0;
    if (code != 0) {
        size_t rlen = reason != NULL ? strlen(reason) : 0;
        if (rlen > sizeof(payload) - 2)
            rlen = sizeof(payload) - 2;
        payload[0] = (char)(code >> 8);
        payload[1] = (char)code;
        if (rlen > 0)
            memcpy(payload + 2, reason, rlen);
        len = 2 + rlen;
    }
    return ws_send_frame(c, WS_CLOSE, 1, payload, len);
}

int ws_recv(tconn *c, ws_frame *f, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    const unsigned char *p;
    size_t header_len = 2;
    uint64_t len = 0;
    int r, i;

    memset(f, 0, sizeof(*f));
    for (;;) {
        p = (const unsigned char *)c->buf;
        if (c->len >= 2) {
            size_t len7 = p[1] & 0x7F;
            header_len = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
            if (c->len >= header_len) {
                if (len7 == 126)
                    len = ((uint64_t)p[2] << 8) | p[3];
                else if (len7 == 127)
                    for (len = 0, i = 0; i < 8; i++)
                        len = (len << 8) | p[2 + i];
                else
                    len = len7;
                if (c->len >= header_len + len)
                    break;
            }
        }
        r = tconn_fill(c, remaining_ms(deadline));
        if (r < 0)
            return r == TC_EOF && c->len > 0 ? TC_BAD : r;
    }
    f->fin = p[0] >> 7;
    f->opcode = p[0] & 0x0F;
    /* A server frame is never masked and (without extensions) has no RSV bit. */
    if ((p[0] & 0x70) != 0 || (p[1] & 0x80) != 0)
        return TC_BAD;
    switch (f->opcode) {
    case WS_CONT:
    case WS_TEXT:
    case WS_BINARY:
        break;
    case WS_CLOSE:
    case WS_PING:
    case WS_PONG:
        if (!f->fin || len > 125)
            return TC_BAD;
        break;
    default:
        return TC_BAD;
    }
    f->data = malloc((size_t)len + 1);
    if (f->data == NULL)
        return TC_RESET;
    memcpy(f->data, c->buf + header_len, (size_t)len);
    f->data[len] = '\0';
    f->len = (size_t)len;
    tconn_consume(c, header_len + (size_t)len);
    if (f->opcode == WS_CLOSE) {
        if (f->len == 1) {
            ws_frame_free(f);
            return TC_BAD;
        }
        f->close_code =
            f->len >= 2 ? ((unsigned char)f->data[0] << 8) | (unsigned char)f->data[1] : 1005;
        f->reason = f->len >= 2 ? f->data + 2 : f->data;
    }
    return 0;
}

void ws_frame_free(ws_frame *f) {
    free(f->data);
    memset(f, 0, sizeof(*f));
}

static const char *opcode_name(int opcode) {
    switch (opcode) {
    case WS_CONT:
        return "continuation";
    case WS_TEXT:
        return "text";
    case WS_BINARY:
        return "binary";
    case WS_CLOSE:
        return "close";
    case WS_PING:
        return "ping";
    case WS_PONG:
        return "pong";
    default:
        return "unknown";
    }
}

static const char *result_name(int r) {
    switch (r) {
    case TC_EOF:
        return "the server closed the connection";
    case TC_RESET:
        return "the connection was reset";
    case TC_TIMEOUT:
        return "timed out";
    case TC_BAD:
        return "the server sent an invalid frame";
    default:
        return "?";
    }
}

/* Receives a frame or fails the test. */
static void recv_or_fail(tconn *c, ws_frame *f, const char *wanted) {
    int r = ws_recv(c, f, TC_TIMEOUT_MS);
    if (r != 0)
        fail_msg("waiting for %s: %s", wanted, result_name(r));
}

void ws_expect_text(tconn *c, const char *text) {
    ws_frame f;
    recv_or_fail(c, &f, text);
    if (f.opcode != WS_TEXT || !f.fin || f.len != strlen(text) || memcmp(f.data, text, f.len) != 0)
        fail_freeing(f.data, "expected text \"%.200s\", got %s frame (%zu bytes) \"%.200s\"", text,
                     opcode_name(f.opcode), f.len, f.data);
    ws_frame_free(&f);
}

char *ws_expect_text_prefix(tconn *c, const char *prefix) {
    ws_frame f;
    char *text;
    recv_or_fail(c, &f, prefix);
    if (f.opcode != WS_TEXT || strncmp(f.data, prefix, strlen(prefix)) != 0)
        fail_freeing(f.data, "expected text starting \"%s\", got %s frame \"%.200s\"", prefix,
                     opcode_name(f.opcode), f.data);
    text = f.data;
    f.data = NULL;
    return text;
}

void ws_expect_binary(tconn *c, const void *data, size_t len) {
    ws_frame f;
    recv_or_fail(c, &f, "a binary frame");
    if (f.opcode != WS_BINARY || !f.fin || f.len != len ||
        (len > 0 && memcmp(f.data, data, len) != 0))
        fail_freeing(f.data, "expected a binary frame of %zu bytes, got %s frame of %zu bytes", len,
                     opcode_name(f.opcode), f.len);
    ws_frame_free(&f);
}

void ws_expect_close(tconn *c, int code, const char *reason) {
    ws_frame f;
    recv_or_fail(c, &f, "a close frame");
    if (f.opcode != WS_CLOSE)
        fail_freeing(f.data, "expected Close %d, got %s frame (%zu bytes) \"%.200s\"", code,
                     opcode_name(f.opcode), f.len, f.data);
    if (f.close_code != code)
        fail_freeing(f.data, "expected Close %d, got Close %d \"%s\"", code, f.close_code,
                     f.reason);
    if (reason != NULL && strcmp(f.reason, reason) != 0)
        fail_freeing(f.data, "expected Close %d \"%s\", got reason \"%s\"", code, reason, f.reason);
    ws_frame_free(&f);
}

/* Fails, saying what arrived instead of the close (decoded when it is a
 * WebSocket frame). */
static void fail_unexpected_bytes(tconn *c) {
    ws_frame f;
    size_t n = c->len;
    if (ws_recv(c, &f, 0) == 0) {
        if (f.opcode == WS_CLOSE)
            fail_freeing(f.data,
                         "expected the server to close, but it sent another Close frame: %d \"%s\"",
                         f.close_code, f.reason);
        fail_freeing(f.data,
                     "expected the server to close, but it sent a %s frame (%zu bytes) \"%.200s\"",
                     opcode_name(f.opcode), f.len, f.data);
    }
    fail_msg("expected the server to close, but %zu more bytes arrived: \"%.200s\"", n, c->buf);
}

void tconn_expect_close(tconn *c) {
    int r;
    if (c->len > 0)
        fail_unexpected_bytes(c);
    r = tconn_fill(c, TC_TIMEOUT_MS);
    if (r > 0)
        fail_unexpected_bytes(c);
    if (r == TC_TIMEOUT)
        fail_msg("the server did not close the connection within %d ms", TC_TIMEOUT_MS);
}

/* ---- the probe party ---- */

tconn *probe_open(int port, const char *room, const char *query, char *id_out) {
    char target[2048];
    char *hello, *id_end;
    tconn *c;

    snprintf(target, sizeof(target), "/parties/probe/%s%s%s", room, query != NULL ? "?" : "",
             query != NULL ? query : "");
    c = ws_open(port, target);
    hello = ws_expect_text_prefix(c, "hello:");
    id_end = strchr(hello + 6, ':');
    if (id_end == NULL)
        fail_freeing(hello, "malformed greeting \"%s\"", hello);
    if (id_out != NULL) {
        size_t n = (size_t)(id_end - (hello + 6));
        if (n > 299)
            n = 299;
        memcpy(id_out, hello + 6, n);
        id_out[n] = '\0';
    }
    free(hello);
    return c;
}

tconn *probe_open_behind(int port, const char *source, const void *prefix, size_t prefix_len,
                         const char *room, const char *headers) {
    tconn *c = tconn_open_from(port, 0, source);
    char target[256];
    http_response res;
    char *hello;

    assert_non_null(c);
    if (prefix_len > 0)
        assert_int_equal(tconn_send(c, prefix, prefix_len), 0);
    snprintf(target, sizeof(target), "/parties/probe/%s", room);
    assert_int_equal(ws_handshake(c, target, headers, NULL, 0, &res), 0);
    http_response_free(&res);
    hello = ws_expect_text_prefix(c, "hello:");
    free(hello);
    return c;
}

char *room_expect_record(int port, const char *party, const char *room) {
    char target[1024];
    http_response res;
    char *body;

    snprintf(target, sizeof(target), "/parties/%s/%s", party, room);
    http_expect_get(port, target, &res);
    if (res.status != 200) {
        int status = res.status;
        http_response_free(&res);
        fail_msg("GET %s: status %d", target, status);
    }
    body = res.body;
    res.body = NULL;
    http_response_free(&res);
    return body;
}

char *probe_record(int port, const char *room) {
    return room_expect_record(port, "probe", room);
}

long long counter_expect_count(int port, const char *room) {
    char *record = room_expect_record(port, "counter", room);
    const char *p = strstr(record, "\"count\":");
    long long count = p != NULL ? strtoll(p + 8, NULL, 10) : -1;

    if (p == NULL || strstr(record, room) == NULL) {
        fprintf(stderr, "GET /parties/counter/%s: %s\n", room, record);
        free(record);
        fail_msg("GET /parties/counter/%s: no count or name in the answer", room);
    }
    free(record);
    return count;
}

char *probe_expect_record(int port, const char *room, const char *needle) {
    int64_t deadline = test_now_ms() + TC_TIMEOUT_MS;
    char *record;
    /* The record is asked for again until it has the entry: a close seen
     * on another connection may reach the room just after this request. */
    for (;;) {
        record = probe_record(port, room);
        if (strstr(record, needle) != NULL)
            return record;
        if (test_now_ms() >= deadline)
            break;
        free(record);
    }
    fail_freeing(record, "room %s: record has no %s within %d ms: %s", room, needle, TC_TIMEOUT_MS,
                 record);
    return NULL;
}

size_t count_occurrences(const char *hay, const char *needle) {
    size_t n = 0, len = strlen(needle);
    const char *p = hay;
    if (len == 0)
        return 0;
    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += len;
    }
    return n;
}

int test_notify_listen(const char *path) {
    struct sockaddr_un addr;
    int fd;

    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    setenv("NOTIFY_SOCKET", path, 1);
    return fd;
}

long test_notify_wait_ready(int fd) {
    char buf[512];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        const char *pid;
        ssize_t n;
        if (poll(&p, 1, 60000) != 1)
            fail_msg("no READY=1 from partyd within 60 s");
        n = recv(fd, buf, sizeof(buf) - 1, 0);
        assert_true(n > 0);
        buf[n] = '\0';
        if (strstr(buf, "READY=1") == NULL)
            continue;
        pid = strstr(buf, "MAINPID=");
        return pid != NULL ? strtol(pid + 8, NULL, 10) : 0;
    }
}

void test_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    int ok = f != NULL && fputs(text, f) >= 0;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fail_msg("cannot write %s", path);
}

long long metrics_value(const char *body, const char *series) {
    size_t len = strlen(series);
    const char *line = body;

    while (line != NULL) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtoll(line + len + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    fail_msg("/_partyd/metrics has no %s:\n%s", series, body);
    return -1;
}

long long metrics_get(int port, const char *series) {
    http_response res;
    long long value;

    http_expect_get(port, "/_partyd/metrics", &res);
    if (res.status != 200) {
        int status = res.status;
        http_response_free(&res);
        fail_msg("/_partyd/metrics answered %d", status);
    }
    value = metrics_value(res.body, series);
    http_response_free(&res);
    return value;
}

void partyd_expect_healthy(int port) {
    http_response res;
    tconn *c;

    http_expect_get(port, "/_partyd/health", &res);
    if (res.status != 200 || strcmp(res.body, "ok\n") != 0) {
        int status = res.status;
        http_response_free(&res);
        fail_msg("health check: %d instead of 200 ok", status);
    }
    http_response_free(&res);
    c = ws_open(port, "/parties/echo/health-check");
    if (ws_send_text(c, "still here?") != 0)
        fail_msg("health check: cannot send on a new WebSocket");
    ws_expect_text(c, "still here?");
    tconn_close(c);
}

void probe_expect_pipelined_records(tconn *c, const char *prefix, int n) {
    int i;

    for (i = 0; i < n; i++) {
        http_response res;
        char name[320];
        int r = http_read_response(c, 0, &res, TC_TIMEOUT_MS);
        if (r != 0)
            fail_msg("response %d of %d: %d", i + 1, n, r);
        snprintf(name, sizeof(name), "\"name\":\"%s%d\"", prefix, i);
        if (res.status != 200 || strstr(res.body, name) == NULL)
            fail_msg("response %d: %d %s", i + 1, res.status, res.body);
        http_response_free(&res);
    }
}
