// A tight fork/exec loop: N children, each `exec /bin/true vigil-bench-NONCE-I`, reaped one by
// one. Writes each child's pid (one per line) to PIDFILE, so observers can be scored on
// exactly these processes.
//
// usage: spawn N NONCE PIDFILE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s N NONCE PIDFILE\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    FILE *pids = fopen(argv[3], "w");
    if (!pids) { perror(argv[3]); return 1; }
    char arg[128];
    for (long i = 0; i < n; i++) {
        snprintf(arg, sizeof arg, "vigil-bench-%s-%ld", argv[2], i);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            execl("/bin/true", "/bin/true", arg, (char *)NULL);
            _exit(127);
        }
        fprintf(pids, "%d\n", (int)pid);
        int status;
        waitpid(pid, &status, 0);
    }
    fclose(pids);
    return 0;
}
