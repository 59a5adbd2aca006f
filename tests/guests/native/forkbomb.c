/* Forks without end: RLIMIT_NPROC stops it, the deadline kills what is left. */
#include <unistd.h>
int main(void) {
    for (;;) fork();
}
