/* flowcast-wake-cost: what waking a sleeping thread costs on this machine,
 * without flowcast in the way. Every change on a cluster's commit path
 * crosses threads several times (loop to writer, writer to PostgreSQL and
 * back, writer to loops, node to NATS to node, node to reader), and each
 * crossing wakes a thread that was asleep; on a virtual machine whose idle
 * CPUs halt, waking one on another CPU goes through the host.
 *
 *   flowcast-wake-cost [ROUNDS [PAUSE_US]]
 *
 * Two threads play ping-pong over two eventfds: the first writes one,
 * the second (blocked in read) wakes and writes the other back. Between
 * rounds the first sleeps PAUSE_US (default 2000), so both are asleep when
 * a round starts, as on the commit path at 100 changes/s. Three
 * placements: as the scheduler likes (unpinned), both on CPU 0, on CPUs 0
 * and 1. It prints each placement's round trip (two wake-ups) in
 * microseconds: p50, p90, p99 and max. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct pair {
    int ping, pong; /* eventfds */
    int rounds;
    int cpu; /* the second thread's, -1: unpinned */
} pair;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Pins the calling thread to cpu; -1 lets it run anywhere. */
static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0) {
        for (int i = 0; i < CPU_SETSIZE; i++)
            CPU_SET(i, &set);
    } else {
        CPU_SET(cpu, &set);
    }
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *answer(void *arg)
{
    pair *p = arg;
    pin(p->cpu);
    uint64_t v;
    for (int i = 0; i < p->rounds; i++) {
        if (read(p->ping, &v, sizeof v) != sizeof v) break;
        v = 1;
        if (write(p->pong, &v, sizeof v) != sizeof v) break;
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One placement: the first thread on cpu_a, the second on cpu_b. */
static int measure(const char *label, int cpu_a, int cpu_b, int rounds, int pause_us)
{
    pair p = {eventfd(0, 0), eventfd(0, 0), rounds, cpu_b};
    uint64_t *rtt = calloc((size_t)rounds, sizeof *rtt);
    pthread_t t;
    if (p.ping < 0 || p.pong < 0 || !rtt || pthread_create(&t, NULL, answer, &p) != 0) {
        perror("flowcast-wake-cost");
        return 1;
    }
    pin(cpu_a);
    for (int i = 0; i < rounds; i++) {
        usleep((useconds_t)pause_us);
        uint64_t v = 1, t0 = now_ns();
        if (write(p.ping, &v, sizeof v) != sizeof v || read(p.pong, &v, sizeof v) != sizeof v)
            break;
        rtt[i] = now_ns() - t0;
    }
    pthread_join(t, NULL);
    qsort(rtt, (size_t)rounds, sizeof *rtt, by_value);
    printf("%-22s round trip (2 wake-ups), us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", label,
           rtt[rounds / 2] / 1e3, rtt[rounds * 9 / 10] / 1e3, rtt[rounds * 99 / 100] / 1e3,
           rtt[rounds - 1] / 1e3);
    close(p.ping);
    close(p.pong);
    free(rtt);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    int pause_us = argc > 2 ? atoi(argv[2]) : 2000;
    if (rounds < 100 || pause_us < 0) {
        fprintf(stderr, "usage: flowcast-wake-cost [ROUNDS (>= 100) [PAUSE_US]]\n");
        return 2;
    }
    int two = sysconf(_SC_NPROCESSORS_ONLN) > 1;
    return measure("unpinned", -1, -1, rounds, pause_us) ||
           measure("both on CPU 0", 0, 0, rounds, pause_us) ||
           (two && measure("CPU 0 and CPU 1", 0, 1, rounds, pause_us));
}
