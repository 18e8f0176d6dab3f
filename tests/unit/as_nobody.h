/* as_nobody: lets a test that needs an unprivileged user (permission
 * errors, which root never gets) run as root too. As root, the test runs
 * its own binary again as the user nobody (uid/gid 65534), filtered to
 * that one test, and passes only if that run passes; the test is never
 * skipped. Include after cmocka.h; call as_nobody_main() first in main. */
#ifndef PARTY_TEST_AS_NOBODY_H
#define PARTY_TEST_AS_NOBODY_H

#include <grp.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define AS_NOBODY_UID 65534

/* In main: "--only NAME" runs that one test (how the unprivileged run is
 * started). */
static void as_nobody_main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--only") == 0)
        cmocka_set_test_filter(argv[2]);
}

/* As root: runs test_name in this binary as nobody and returns its exit
 * status (0: it passed). */
static int as_nobody_run(const char *test_name) {
    int status = 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(AS_NOBODY_UID) != 0 || setuid(AS_NOBODY_UID) != 0)
            _exit(97);
        execl("/proc/self/exe", "as-nobody", "--only", test_name, (char *)NULL);
        _exit(98);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* First line of a test that needs an unprivileged user: as root, runs it
 * (by its own function name, which cmocka uses as the test's name) as
 * nobody and ends here with that run's verdict. */
#define RUN_AS_NOBODY_IF_ROOT()                                                                    \
    do {                                                                                           \
        if (geteuid() == 0) {                                                                      \
            int as_nobody_status = as_nobody_run(__func__);                                        \
            if (as_nobody_status != 0)                                                             \
                fail_msg("%s as user nobody: exit status %d", __func__, as_nobody_status);         \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#endif
