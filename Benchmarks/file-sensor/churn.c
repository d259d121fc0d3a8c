/* File churn for the file-sensor benchmark.
 *
 *   churn setup ROOT DIRS         create ROOT/d0000 .. ROOT/d(DIRS-1)
 *   churn run ROOT FILES DIRS     FILES times: create ROOT/dNNNN/fI, write 64 bytes, close,
 *                                 unlink (spread round-robin over the DIRS directories)
 *   churn keep ROOT FILES DIRS    the same without the unlink: the files stay, to be hashed
 *
 * With run each file yields IN_CREATE, IN_CLOSE_WRITE and IN_DELETE: 3 events per file; with
 * keep IN_CREATE and IN_CLOSE_WRITE: 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "setup") == 0) {
        long dirs = atol(argv[3]);
        char path[4096];
        for (long d = 0; d < dirs; d++) {
            snprintf(path, sizeof path, "%s/d%04ld", argv[2], d);
            if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); return 1; }
        }
        return 0;
    }
    int keep = argc == 5 && strcmp(argv[1], "keep") == 0;
    if (argc == 5 && (keep || strcmp(argv[1], "run") == 0)) {
        long files = atol(argv[3]), dirs = atol(argv[4]);
        if (dirs <= 0) return 2;
        char path[4096], data[64];
        memset(data, 'v', sizeof data);
        for (long i = 0; i < files; i++) {
            snprintf(path, sizeof path, "%s/d%04ld/f%ld", argv[2], i % dirs, i);
            int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) { perror(path); return 1; }
            if (write(fd, data, sizeof data) != (ssize_t)sizeof data) { perror("write"); return 1; }
            close(fd);
            if (!keep && unlink(path) != 0) { perror("unlink"); return 1; }
        }
        return 0;
    }
    fprintf(stderr, "usage: churn setup ROOT DIRS | churn run|keep ROOT FILES DIRS\n");
    return 2;
}
