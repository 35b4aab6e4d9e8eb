/* Test driver for libflowcast's live updates: prints one JSON line per update
 * and per state change, for the e2e tests (tests/e2e/test_client_*.py). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flowcast/client.h"

static long max_updates = -1;
static long n_updates;

/* --then-add N:ID / --then-remove N:ID: changes the watched set from the
 * update callback once N updates were delivered (a running watch). */
#define MAX_ACTIONS 8
static struct {
    long after;
    int add;
    char id[80];
} actions[MAX_ACTIONS];
static int n_actions;

/* --thread-add MS:ID: another thread asks for fcc_watch_add after MS ms,
 * through a uv_async_t on the watch's loop (the documented way). */
static uv_async_t thread_async;
static int thread_async_on;
static long thread_ms;
static char thread_id[80];
static fcc_watch *the_watch;

static void on_thread_async(uv_async_t *a)
{
    (void)a;
    int r = fcc_watch_add(the_watch, thread_id, -1);
    printf("{\"event\":\"added\",\"workflow_id\":\"%s\",\"result\":%d,\"thread\":true}\n",
           thread_id, r);
    fflush(stdout);
}

static void *asker(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = thread_ms / 1000, .tv_nsec = (thread_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    uv_async_send(&thread_async);
    return NULL;
}

static const char *state_name(fcc_state s)
{
    switch (s) {
    case FCC_STATE_CONNECTING:
        return "connecting";
    case FCC_STATE_OPEN:
        return "open";
    case FCC_STATE_RECONNECTING:
        return "reconnecting";
    case FCC_STATE_CLOSED:
        return "closed";
    }
    return "?";
}

/* Copies s into out as the inside of a JSON string. */
static void escape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; s && *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            out[n++] = '\\', out[n++] = (char)ch;
        else if (ch < 0x20)
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        else
            out[n++] = (char)ch;
    }
    out[n] = '\0';
}

static void on_update(fcc_watch *w, const fcc_update *u, void *data)
{
    char name[1600]; /* a name is at most 256 bytes, 6 each when escaped */
    (void)data;
    escape(u->name, name, sizeof name);
    printf("{\"event\":\"update\",\"workflow_id\":\"%s\",\"epoch\":%lld,\"seq\":%lld,"
           "\"status\":\"%s\",\"current_step\":%lld,\"total_steps\":%lld,\"resync\":%s,"
           "\"deleted\":%s,\"name\":\"%s\",\"raw\":%s}\n",
           u->workflow_id, (long long)u->epoch, (long long)u->seq, u->status ? u->status : "",
           (long long)u->current_step, (long long)u->total_steps, u->resync ? "true" : "false",
           u->deleted ? "true" : "false", name, u->json);
    fflush(stdout);
    ++n_updates;
    for (int i = 0; i < n_actions; i++) {
        if (actions[i].after != n_updates) continue;
        int r = actions[i].add ? fcc_watch_add(w, actions[i].id, -1)
                               : fcc_watch_remove(w, actions[i].id);
        printf("{\"event\":\"%s\",\"workflow_id\":\"%s\",\"result\":%d}\n",
               actions[i].add ? "added" : "removed", actions[i].id, r);
        fflush(stdout);
    }
    if (n_updates == max_updates) fcc_watch_close(w);
}

static void on_state(fcc_watch *w, const fcc_state_info *s, void *data)
{
    char reason[1024], url[1024], last[1024];
    int last_code;
    (void)data;
    escape(s->reason, reason, sizeof reason);
    escape(fcc_watch_url(w), url, sizeof url);
    escape(fcc_watch_last_error(w, &last_code), last, sizeof last);
    printf("{\"event\":\"state\",\"state\":\"%s\",\"attempt\":%u,\"delay_ms\":%llu,"
           "\"error\":%d,\"reason\":\"%s\",\"url\":\"%s\",\"last_error\":%d,"
           "\"last_message\":\"%s\"}\n",
           state_name(s->state), s->attempt, (unsigned long long)s->delay_ms, s->error, reason, url,
           last_code, last);
    fflush(stdout);
    /* Our handle on the watch's loop must close with it, or fcc_watch_run
     * would wait for it forever. */
    if (s->state == FCC_STATE_CLOSED && thread_async_on) {
        thread_async_on = 0;
        uv_close((uv_handle_t *)&thread_async, NULL);
    }
}

/* --token-file: the token callback reads the file's first line (the test
 * writes a fresh token there); each call is reported as an event. */
static const char *token_file;
static long token_calls;

static int token_from_file(void *data, char *buf, size_t cap)
{
    (void)data;
    token_calls++;
    FILE *f = fopen(token_file, "r");
    int ok = f && fgets(buf, (int)cap, f) != NULL;
    if (f) fclose(f);
    if (!ok) {
        snprintf(buf, cap, "cannot read %s", token_file);
    } else {
        buf[strcspn(buf, "\r\n")] = '\0';
    }
    printf("{\"event\":\"token\",\"calls\":%ld,\"ok\":%s}\n", token_calls, ok ? "true" : "false");
    fflush(stdout);
    return ok ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: fcc_probe URL [--all] [--count N] [--ping MS] [--pong MS]\n"
                    "                 [--connect-timeout MS] [--backoff-max MS] [--max-retries N]\n"
                    "                 [--token T] [--token-file FILE] [--ca-file FILE]\n"
                    "                 [--then-add N:ID] [--then-remove N:ID] [--thread-add MS:ID]\n"
                    "                 [--since ID=[EPOCH:]SEQ] ID...\n"
                    "URL may be a comma-separated list\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    fcc_watch_options o = {.on_update = on_update, .on_state = on_state};
    int all = 0, first_id = argc;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--all") == 0)
            all = 1;
        else if (strcmp(a, "--count") == 0 && has_val)
            max_updates = atol(argv[++i]);
        else if (strcmp(a, "--ping") == 0 && has_val)
            o.ping_interval_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--pong") == 0 && has_val)
            o.pong_timeout_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--connect-timeout") == 0 && has_val)
            o.connect_timeout_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--backoff-max") == 0 && has_val)
            o.backoff_max_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--max-retries") == 0 && has_val)
            o.max_retries = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--token") == 0 && has_val)
            o.token = argv[++i];
        else if (strcmp(a, "--token-file") == 0 && has_val)
            token_file = argv[++i], o.token_fn = token_from_file;
        else if (strcmp(a, "--ca-file") == 0 && has_val)
            o.ca_file = argv[++i];
        else if (strcmp(a, "--thread-add") == 0 && has_val) {
            const char *v = argv[++i], *colon = strchr(v, ':');
            if (!colon) return usage();
            thread_ms = atol(v);
            snprintf(thread_id, sizeof thread_id, "%s", colon + 1);
            thread_async_on = 1;
        } else if ((strcmp(a, "--then-add") == 0 || strcmp(a, "--then-remove") == 0) && has_val &&
                   n_actions < MAX_ACTIONS) {
            const char *v = argv[++i], *colon = strchr(v, ':');
            if (!colon) return usage();
            actions[n_actions].after = atol(v);
            actions[n_actions].add = a[7] == 'a';
            snprintf(actions[n_actions].id, sizeof actions[n_actions].id, "%s", colon + 1);
            n_actions++;
        } else if (a[0] == '-' && strcmp(a, "--since") != 0)
            return usage();
        else if (first_id == argc)
            first_id = i;
        if (first_id != argc) break; /* the ids (and their --since) come last */
    }
    int err = 0;
    fcc_watch *w = fcc_watch_new(NULL, argv[1], &o, &err);
    if (!w) {
        fprintf(stderr, "fcc_probe: %s\n", fcc_strerror(err));
        return 2;
    }
    if (all) fcc_watch_add_all(w);
    for (int i = first_id; i < argc; i++) {
        int64_t since = -1, epoch = 0;
        const char *id = argv[i];
        char buf[80];
        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            char *eq = strchr(buf, '=');
            if (!eq) return usage();
            *eq = '\0';
            char *colon = strchr(eq + 1, ':');
            if (colon) epoch = atoll(eq + 1);
            since = atoll(colon ? colon + 1 : eq + 1);
            id = buf;
        }
        if (fcc_watch_add_from(w, id, epoch, since) != 0) {
            fprintf(stderr, "fcc_probe: bad id %s\n", id);
            return 2;
        }
    }
    pthread_t th;
    int threaded = thread_async_on;
    the_watch = w;
    if (threaded) {
        uv_async_init(fcc_watch_loop(w), &thread_async, on_thread_async);
        pthread_create(&th, NULL, asker, NULL);
    }
    err = fcc_watch_run(w);
    if (threaded) pthread_join(th, NULL);
    return err == 0 ? 0 : 1;
}
