/* flowcast-send-cost: what one small send on loopback TCP costs the sender, in
 * CPU time, with one write() per socket against one io_uring submission for
 * the whole round. This is the cost under every missed target of the
 * benchmark issue (seed latency, idle pings, ingest answers), measured
 * without flowcast in the way.
 *
 *   flowcast-send-cost [SOCKETS [ROUNDS [PAUSE_US [BYTES [spin]]]]]
 *
 * A child process on CPU 1 reads every socket (epoll); the parent on CPU 0
 * sends BYTES to each of SOCKETS connections per round, pausing PAUSE_US
 * between rounds, first with write(), then with io_uring (IORING_OP_SEND,
 * MSG_DONTWAIT, so every send completes within the submission), twice each.
 * It prints the sender's user+system CPU per send. With "spin" the reader
 * polls (epoll_wait with no timeout) instead of sleeping, so no send has to
 * wake it: what is left is the TCP path itself. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct opts {
    int sockets, rounds, pause_us, bytes;
    int spin; /* the reader never sleeps */
} opts;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("send-cost: sched_setaffinity");
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Connects n client sockets to a loopback listener; the accepted ends go to
 * srv[], the client ends to cli[]. 0 or -1. */
static int connect_pairs(int n, int *srv, int *cli)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0 || listen(lfd, 4096) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int one = 1;
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&a, sizeof a) != 0) return -1;
        if ((srv[i] = accept(lfd, NULL, NULL)) < 0) return -1;
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(lfd);
    return 0;
}

/* The receiving side: drains every client socket until they close. */
static void drain(int n, const int *cli, int spin)
{
    pin(1);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = cli[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cli[i], &ev);
    }
    static char buf[65536];
    struct epoll_event evs[1024];
    for (;;) {
        int k = epoll_wait(ep, evs, 1024, spin ? 0 : -1);
        for (int j = 0; j < k; j++)
            if (read(evs[j].data.fd, buf, sizeof buf) <= 0) _exit(0);
    }
}

static int round_write(const opts *o, const int *srv, const char *msg)
{
    for (int i = 0; i < o->sockets; i++)
        if (write(srv[i], msg, (size_t)o->bytes) != o->bytes) return -1;
    return 0;
}

static int round_uring(const opts *o, struct io_uring *ring, const int *srv, const char *msg)
{
    for (int i = 0; i < o->sockets; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe) {
            io_uring_submit(ring);
            sqe = io_uring_get_sqe(ring);
        }
        io_uring_prep_send(sqe, srv[i], msg, (size_t)o->bytes, MSG_DONTWAIT);
    }
    io_uring_submit(ring);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int bad = 0;
    io_uring_for_each_cqe(ring, head, cqe)
    {
        if (cqe->res != o->bytes) bad = 1;
        seen++;
    }
    io_uring_cq_advance(ring, seen);
    return bad || (int)seen != o->sockets ? -1 : 0;
}

int main(int argc, char **argv)
{
    opts o = {.sockets = 100, .rounds = 500, .pause_us = 10000, .bytes = 200};
    if (argc > 1) o.sockets = atoi(argv[1]);
    if (argc > 2) o.rounds = atoi(argv[2]);
    if (argc > 3) o.pause_us = atoi(argv[3]);
    if (argc > 4) o.bytes = atoi(argv[4]);
    if (argc > 5) o.spin = strcmp(argv[5], "spin") == 0;
    if (o.sockets < 1 || o.sockets > 4096 || o.rounds < 1 || o.pause_us < 0 || o.bytes < 1 ||
        o.bytes > 4096 || (argc > 5 && !o.spin)) {
        fprintf(stderr, "usage: flowcast-send-cost [SOCKETS<=4096 [ROUNDS [PAUSE_US "
                        "[BYTES<=4096 [spin]]]]]\n");
        return 2;
    }
    int *srv = calloc((size_t)o.sockets, sizeof *srv),
        *cli = calloc((size_t)o.sockets, sizeof *cli);
    char *msg = malloc((size_t)o.bytes);
    struct io_uring ring;
    if (!srv || !cli || !msg || connect_pairs(o.sockets, srv, cli) != 0) {
        perror("send-cost: set-up");
        return 1;
    }
    memset(msg, 'x', (size_t)o.bytes);
    int rc = io_uring_queue_init(4096, &ring, 0);
    if (rc != 0) {
        fprintf(stderr, "send-cost: io_uring_queue_init: %s\n", strerror(-rc));
        return 1;
    }
    pid_t child = fork();
    if (child == 0) drain(o.sockets, cli, o.spin);
    pin(0);
    for (int pass = 0; pass < 4; pass++) {
        int uring = pass & 1;
        double c0 = cpu_seconds();
        for (int r = 0; r < o.rounds; r++) {
            if ((uring ? round_uring(&o, &ring, srv, msg) : round_write(&o, srv, msg)) != 0) {
                fprintf(stderr, "send-cost: a send did not complete at once\n");
                kill(child, SIGKILL);
                return 1;
            }
            if (o.pause_us) usleep((useconds_t)o.pause_us);
        }
        double per = (cpu_seconds() - c0) / ((double)o.rounds * o.sockets) * 1e6;
        printf("%-8s %d sockets x %d rounds, %d B, %d us pause: %.2f us CPU per send\n",
               uring ? "io_uring" : "write", o.sockets, o.rounds, o.bytes, o.pause_us, per);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    io_uring_queue_exit(&ring);
    return 0;
}
