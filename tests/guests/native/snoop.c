/* Tries to read the host's secrets and the provider's data dir (DATA_DIR); reports
 * each attempt, the descriptors it inherited and the processes it can see. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void try(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) { printf("%s: READ\n", path); close(fd); }
    else printf("%s: denied (%s)\n", path, strerror(errno));
}
int main(void) {
    printf("Content-Type: text/plain\n\n");
    try("/etc/shadow");
    try("/etc/passwd");
    try("/proc/1/root/etc/shadow");
    const char *data = getenv("DATA_DIR");
    if (data) try(data);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[300], t[300];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(p, t, sizeof t - 1);
        if (n <= 0) continue;
        t[n] = 0;
        if (strncmp(t, "/proc/", 6) == 0) continue; /* the listing itself */
        printf("fd %s\n", e->d_name);
    }
    int pids = 0;
    DIR *proc = opendir("/proc");
    while (proc && (e = readdir(proc))) if (e->d_name[0] >= '0' && e->d_name[0] <= '9') pids++;
    printf("pids %d\n", pids);
    return 0;
}
