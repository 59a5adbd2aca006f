/* Writes to /tmp until it is full; reports how much fitted and why it stopped. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    static char buf[64 << 10];
    memset(buf, 'x', sizeof buf);
    FILE *f = fopen("/tmp/fill", "w");
    unsigned long total = 0;
    int err = 0;
    if (!f) err = errno;
    while (f) {
        size_t n = fwrite(buf, 1, sizeof buf, f);
        total += n;
        if (n < sizeof buf || fflush(f) != 0) { err = errno; break; }
    }
    printf("Content-Type: text/plain\n\nwrote %lu bytes: %s\n", total, strerror(err));
    return 0;
}
