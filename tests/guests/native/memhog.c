/* Allocates and touches memory until RLIMIT_AS says no, then aborts (a crash: 500). */
#include <stdlib.h>
#include <string.h>
int main(void) {
    for (;;) {
        char *p = malloc(1 << 20);
        if (!p) abort();
        memset(p, 1, 1 << 20);
    }
}
