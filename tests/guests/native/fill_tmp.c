/* Writes to /tmp until it is full; reports how much fitted (bytes the kernel took, not
 * bytes buffered) and why it stopped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    static char buf[64 << 10];
    memset(buf, 'x', sizeof buf);
    int fd = open("/tmp/fill", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    unsigned long total = 0;
    int err = fd < 0 ? errno : 0;
    while (fd >= 0) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n <= 0) { err = n < 0 ? errno : ENOSPC; break; }
        total += (unsigned long)n;
    }
    printf("Content-Type: text/plain\n\nwrote %lu bytes: %s\n", total, strerror(err));
    return 0;
}
