/* libFuzzer driver for libflowcast's REST calls against a hostile server
 * (src/client/http.c, rest.c, wire.c): a loopback server thread answers every
 * request with the fuzz input, in up to three writes, and the client's read
 * loop, response head parser, error bodies (a 401 token_expired makes it
 * refresh its token and resend) and workflow/page decoding must cope with
 * whatever it is.
 *
 * Input: byte 0 picks where the answer is cut into writes; the rest is the
 * server's answer (seeds: tests/fuzz/corpus/fuzz_client_http). */
#include "flowcast/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int listen_fd = -1;
static char url[64];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *answer; /* a copy: the server thread may outlive an input */
static size_t answer_len, cut1, cut2;

/* Reads one request (head, then Content-Length bytes) so that closing after
 * the answer never resets the connection under the client's read. */
static void read_request(int fd)
{
    char buf[8192];
    size_t have = 0;
    long body = -1;
    char *end = NULL;
    while (have < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (r <= 0) return;
        have += (size_t)r;
        buf[have] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(buf, "Content-Length:");
            body = cl ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (end && (long)have >= (end + 4 - buf) + body) return;
    }
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r <= 0) return;
        p += r, n -= (size_t)r;
    }
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) continue;
        read_request(fd);
        pthread_mutex_lock(&lock);
        send_all(fd, answer, cut1);
        send_all(fd, answer + cut1, cut2 - cut1);
        send_all(fd, answer + cut2, answer_len - cut2);
        pthread_mutex_unlock(&lock);
        close(fd);
    }
    return NULL;
}

static void setup_once(void)
{
    if (listen_fd >= 0) return;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(listen_fd, (struct sockaddr *)&a, alen) == 0);
    CHECK(getsockname(listen_fd, (struct sockaddr *)&a, &alen) == 0);
    CHECK(listen(listen_fd, 8) == 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", ntohs(a.sin_port));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, serve, NULL) == 0);
    CHECK(pthread_detach(t) == 0);
}

static void check_error(int r, const fcc_error *e)
{
    CHECK(r < 0);
    CHECK(strlen(e->message) < sizeof e->message && strlen(e->code) < sizeof e->code);
}

static void check_workflow(const fcc_workflow *w)
{
    CHECK(w->id && w->name && w->status && w->message && w->created_at && w->updated_at && w->json);
}

static int fresh_token(void *data, char *buf, size_t cap)
{
    (void)data;
    snprintf(buf, cap, "fresh.token.%d", 2);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    setup_once();
    pthread_mutex_lock(&lock);
    free(answer);
    answer = malloc(size);
    CHECK(answer);
    answer_len = size - 1;
    memcpy(answer, data + 1, answer_len);
    cut1 = answer_len ? (data[0] & 0x0F) * answer_len / 16 : 0;
    cut2 = answer_len ? cut1 + (data[0] >> 4) * (answer_len - cut1) / 16 : 0;
    pthread_mutex_unlock(&lock);

    int err = 0;
    fcc_client *c = fcc_client_new(url, "token", &err);
    CHECK(c);
    fcc_client_set_timeout(c, 5000);
    /* A garbled answer is a lost one, which the client would resend after a
     * backoff: one answer per call here, the parsers are what is fuzzed. */
    fcc_client_set_retries(c, 0, 0);
    /* An answer of 401 token_expired asks for a fresh token and resends. */
    fcc_client_set_token_fn(c, fresh_token, NULL);
    fcc_error e;
    fcc_workflow w;
    int r = fcc_workflow_get(c, "w1", &w, &e);
    if (r == 0) {
        check_workflow(&w);
        fcc_workflow_clear(&w);
    } else {
        check_error(r, &e);
    }
    fcc_workflow_page page;
    r = fcc_workflow_list(c, "running", NULL, 10, &page, &e);
    if (r == 0) {
        for (size_t i = 0; i < page.count; i++)
            check_workflow(&page.items[i]);
        fcc_workflow_page_clear(&page);
    } else {
        check_error(r, &e);
    }
    fcc_patch p = FCC_PATCH_INIT;
    p.current_step = 1;
    p.message = "m";
    r = fcc_workflow_update(c, "w1", &p, &w, &e);
    if (r == 0) {
        check_workflow(&w);
        fcc_workflow_clear(&w);
    } else {
        check_error(r, &e);
    }
    fcc_client_free(c);
    return 0;
}
