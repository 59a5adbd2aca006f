/* A Khachapuri function as a native Linux program (the `process` runtime): the same CGI
 * convention as wagi. The request body is on stdin, request details are in the
 * environment, and stdout is a CGI response (headers, a blank line, the body). It runs
 * under bubblewrap with nothing of the host visible, so it is linked statically.
 * Build: ./build.sh (gcc or clang with static glibc: Debian's libc6-dev). */
#include <stdio.h>
#include <stdlib.h>

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v ? v : fallback;
}

int main(void) {
    const char *query = env_or("QUERY_STRING", "");
    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("X-Powered-By: native-hello\n");
    printf("\n");
    printf("Hello from Khachapuri!\n");
    printf("(native via process) %s %s%s%s\n", env_or("REQUEST_METHOD", "?"),
           env_or("PATH_INFO", "/"), query[0] ? "?" : "", query);
    return 0;
}
