/* Tries to write everywhere but /tmp; reports each attempt. OUTSIDE is a host path. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void try(const char *path) {
    FILE *f = fopen(path, "w");
    if (f) { fputs("pwned", f); fclose(f); printf("%s: WRITTEN\n", path); }
    else printf("%s: denied (%s)\n", path, strerror(errno));
}
int main(void) {
    printf("Content-Type: text/plain\n\n");
    try("/pwned");
    try("/app/pwned");
    try("/etc/pwned");
    try("/dev/pwned");
    try("/dev/shm/pwned");
    try("/proc/sys/kernel/hostname");
    const char *outside = getenv("OUTSIDE");
    if (outside) try(outside);
    FILE *f = fopen("/tmp/ok", "w");
    printf("/tmp: %s\n", f ? "writable" : "NOT writable");
    return 0;
}
