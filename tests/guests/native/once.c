/* Shows what one call sees of another: whether /tmp still holds the marker a previous
 * call left, its env var GREETING, and its body echoed back (from stdin). */
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    FILE *m = fopen("/tmp/marker", "r");
    int reused = m != NULL;
    if (m) fclose(m);
    m = fopen("/tmp/marker", "w");
    if (m) { fputs("x", m); fclose(m); }
    printf("Content-Type: text/plain\n\n");
    printf("tmp: %s\n", reused ? "REUSED" : "fresh");
    const char *g = getenv("GREETING");
    printf("greeting: %s\n", g ? g : "(none)");
    printf("method: %s\n", getenv("REQUEST_METHOD") ? getenv("REQUEST_METHOD") : "?");
    printf("body: ");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
    printf("\n");
    return 0;
}
