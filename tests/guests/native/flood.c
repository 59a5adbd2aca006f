/* Writes a valid CGI head, then output without end: more than any response limit. */
#include <stdio.h>
#include <string.h>
int main(void) {
    static char buf[64 << 10];
    memset(buf, 'y', sizeof buf);
    printf("Content-Type: text/plain\n\n");
    for (;;) fwrite(buf, 1, sizeof buf, stdout);
}
