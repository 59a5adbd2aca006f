/* Connects to the host's loopback (TARGET_PORT) and listens itself (LISTEN_PORT) for
 * LISTEN_MS; reports both. Probes never leave the machine. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static struct sockaddr_in at(const char *port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(port ? port : "1"));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}
int main(void) {
    printf("Content-Type: text/plain\n\n");
    struct sockaddr_in t = at(getenv("TARGET_PORT"));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0) printf("connect: no socket (%s)\n", strerror(errno));
    else if (connect(c, (struct sockaddr *)&t, sizeof t) == 0) printf("connect: CONNECTED\n");
    else printf("connect: failed (%s)\n", strerror(errno));
    struct sockaddr_in l = at(getenv("LISTEN_PORT"));
    l.sin_addr.s_addr = htonl(INADDR_ANY);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s >= 0 && bind(s, (struct sockaddr *)&l, sizeof l) == 0 && listen(s, 8) == 0) {
        printf("listen: listening\n");
        fflush(stdout);
        struct timespec ts = {0, 0};
        long ms = atol(getenv("LISTEN_MS") ? getenv("LISTEN_MS") : "0");
        ts.tv_sec = ms / 1000;
        ts.tv_nsec = (ms % 1000) * 1000000L;
        nanosleep(&ts, NULL);
    } else {
        printf("listen: failed (%s)\n", strerror(errno));
    }
    return 0;
}
