/* A Khachapuri function in C, using the wagi (CGI) convention: the request body is on
 * stdin, request details are in the environment, and stdout is a CGI response
 * (headers, a blank line, the body). Build: ./build.sh (clang + wasi-libc). */
#include <stdio.h>
#include <stdlib.h>

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v ? v : fallback;
}

int main(void) {
    const char *query = env_or("QUERY_STRING", "");
    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("X-Powered-By: c-hello\n");
    printf("\n");
    printf("Hello from Khachapuri!\n");
    printf("(C via wagi) %s %s%s%s\n", env_or("REQUEST_METHOD", "?"), env_or("PATH_INFO", "/"),
           query[0] ? "?" : "", query);
    return 0;
}
