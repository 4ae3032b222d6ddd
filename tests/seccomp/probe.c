/* Calls what the seccomp filter refuses, with arguments that an unfiltered kernel
 * answers with something other than EPERM (so the test tells the filter from the
 * kernel's own checks), and prints one line per call: "<name> ok" or "<name> <errno>".
 * Built static by tests/seccomp.rs with Debian's gcc and libc6-dev. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *name_of(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENOTTY: return "ENOTTY";
    case EFAULT: return "EFAULT";
    case EACCES: return "EACCES";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return strerror(e);
    }
}

static void report(const char *what, long rc) {
    if (rc < 0)
        printf("%s %s\n", what, name_of(errno));
    else
        printf("%s ok\n", what);
}

int main(void) {
    /* KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, creating it: succeeds
     * unfiltered. */
    report("keyctl", syscall(SYS_keyctl, 0, -3, 1));
    /* UFFD_USER_MODE_ONLY is allowed to unprivileged users since Linux 5.11. */
    report("userfaultfd", syscall(SYS_userfaultfd, 1));
    /* An unknown command: EINVAL unfiltered. */
    char attr[128] = {0};
    report("bpf", syscall(SYS_bpf, 9999, attr, sizeof attr));
    /* Unknown flags: EINVAL before any permission check. */
    report("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, ~0UL));
    /* The mount point does not exist: ENOENT before the capability check. */
    report("mount", mount("none", "/no/such/dir", "tmpfs", 0, NULL));
    /* stdin is /dev/null, not a terminal: ENOTTY unfiltered. The second form sets bits
     * above the 32 the kernel reads, which must not hide the request. */
    char c = 'x';
    report("ioctl_tiocsti", ioctl(0, TIOCSTI, &c));
    report("ioctl_tiocsti_high", syscall(SYS_ioctl, 0, TIOCSTI | (1UL << 32), &c));
    report("ioctl_fionread", syscall(SYS_ioctl, 0, FIONREAD, &c));
    report("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    report("personality_query", personality(0xffffffff));
    report("personality_no_randomize", personality(ADDR_NO_RANDOMIZE));
    /* A NULL argument: EFAULT/EINVAL unfiltered; Docker's profile answers ENOSYS. */
    report("clone3", syscall(SYS_clone3, NULL, 0));
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report("clone_newuser", pid);
    /* Last: afterwards this process's ids are unmapped. */
    report("unshare_user", unshare(CLONE_NEWUSER));
    pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report("fork", pid);
    return 0;
}
