/* Never ends: the deadline (504) kills it. */
int main(void) {
    volatile unsigned long n = 0;
    for (;;) n++;
}
