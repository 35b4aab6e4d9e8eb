/* flowcast-bench: a WebSocket fan-out load generator for flowcast and its
 * peers (Node ws, nchan). Command line and report; the loop is in loop.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: flowcast-bench [options]\n"
            "  --target flowcast|ws|nchan  server kind: URLs and payload shape (flowcast)\n"
            "  --host IPV4 --port N        server address (127.0.0.1:8001)\n"
            "  --sub-ports P[,P...]        subscribers spread over these ports of --host\n"
            "  --failover-ports P[,P...]   where a dropped subscriber moves next (after the\n"
            "                              other --sub-ports), round robin\n"
            "  --pub-ports P[,P...]        publishers spread over these ports\n"
            "  --subscribers N             WebSocket subscribers (100)\n"
            "  --workflows W               workflows/channels, subscribers spread round-robin (1)\n"
            "  --publishers P              publishing HTTP keep-alive connections (1, max %d)\n"
            "  --pipeline D                requests in flight per publisher (1)\n"
            "  --rate R                    changes/s over all publishers; 0 = as fast as\n"
            "                              acknowledged (0)\n"
            "  --no-publish                idle run: connect, then only answer pings\n"
            "  --window K                  flow control: at most K changes per workflow sent\n"
            "                              but not yet delivered to every subscriber (0 = off)\n"
            "  --duration S                seconds of publishing or idling (10)\n"
            "  --drain S                   most seconds to wait for deliveries after (5)\n"
            "  --settle S                  pause between connected and publishing (0.2)\n"
            "  --connect-concurrency C     handshakes in flight (64)\n"
            "  --src-addrs K               source addresses 127.0.0.1..127.0.0.K (16)\n"
            "  --server-pid PID[,PID...]   sample CPU and RSS of these processes\n"
            "  --tls                       every connection over TLS (wss://, https://); no\n"
            "                              certificate check, no session resumption\n"
            "  --token TOKEN               bearer credential on every request and upgrade\n"
            "  --token-file FILE           the same, read from the first line of FILE\n"
            "  --churn N                   connect churn instead of subscribers: N connections\n"
            "                              opened and closed, --connect-concurrency at a time,\n"
            "                              for at most --duration seconds\n"
            "  --churn-stage tls|ws        close after the TLS handshake (tls) or after the\n"
            "                              WebSocket upgrade's 101 (ws, the default)\n"
            "  --reconnect                 reopen dropped subscribers (flowcast: ?since=)\n"
            "  --no-create                 flowcast: the workflows exist already\n"
            "  --prefix STR                workflow/channel id prefix (b<pid>)\n"
            "  --label NAME                name of the run in the report\n"
            "  --json                      print one JSON object (human summary to stderr)\n"
            "  --quiet                     no progress lines\n",
            FCB_MAX_PUB);
}

/* The first line of path, in a static buffer (the token lives as long as
 * the run). NULL after printing why. */
static const char *read_token(const char *path)
{
    static char tok[FCB_TOKEN_MAX + 2];
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(tok, sizeof(tok), f) == NULL) {
        fprintf(stderr, "flowcast-bench: cannot read a token from %s\n", path);
        if (f) fclose(f);
        return NULL;
    }
    fclose(f);
    tok[strcspn(tok, "\r\n")] = '\0';
    return tok;
}

/* Appends the comma-separated ports of v to ports; -1 on a bad one. */
static int parse_ports(const char *v, int *ports, int *n)
{
    char *p = (char *)v;
    while (*p) {
        long port = strtol(p, &p, 10);
        if (port <= 0 || port > 65535 || *n >= FCB_MAX_PORTS || (*p != ',' && *p != '\0'))
            return -1;
        ports[(*n)++] = (int)port;
        if (*p == ',') p++;
    }
    return *n > 0 ? 0 : -1;
}

static int parse_opts(int argc, char **argv, fcb_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->target = FCB_FLOWCAST;
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8001;
    o->subscribers = 100;
    o->workflows = 1;
    o->publishers = 1;
    o->pipeline = 1;
    o->publish = 1;
    o->duration = 10;
    o->drain = 5;
    o->settle = 0.2;
    o->connect_conc = 64;
    o->src_addrs = 16;
    o->create = 1;
    o->stage = FCB_STAGE_WS;
    snprintf(o->prefix, sizeof(o->prefix), "b%d", (int)getpid());
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v != NULL && (i++, 1))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (ARG("--target")) {
            if (strcmp(v, "flowcast") == 0)
                o->target = FCB_FLOWCAST;
            else if (strcmp(v, "ws") == 0)
                o->target = FCB_WS;
            else if (strcmp(v, "nchan") == 0)
                o->target = FCB_NCHAN;
            else
                goto bad;
        } else if (ARG("--host")) {
            snprintf(o->host, sizeof(o->host), "%s", v);
        } else if (ARG("--port")) {
            o->port = atoi(v);
        } else if (ARG("--sub-ports")) {
            if (o->nsub_ports != o->nsub_spread ||
                parse_ports(v, o->sub_ports, &o->nsub_ports) < 0)
                goto bad;
            o->nsub_spread = o->nsub_ports;
        } else if (ARG("--failover-ports")) {
            if (o->nsub_spread == 0 || parse_ports(v, o->sub_ports, &o->nsub_ports) < 0) goto bad;
        } else if (ARG("--pub-ports")) {
            if (parse_ports(v, o->pub_ports, &o->npub_ports) < 0) goto bad;
        } else if (ARG("--subscribers")) {
            o->subscribers = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--workflows")) {
            o->workflows = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--publishers")) {
            o->publishers = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--pipeline")) {
            o->pipeline = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--rate")) {
            o->rate = strtod(v, NULL);
        } else if (strcmp(a, "--no-publish") == 0) {
            o->publish = 0;
        } else if (ARG("--window")) {
            o->window = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--duration")) {
            o->duration = strtod(v, NULL);
        } else if (ARG("--drain")) {
            o->drain = strtod(v, NULL);
        } else if (ARG("--settle")) {
            o->settle = strtod(v, NULL);
        } else if (ARG("--connect-concurrency")) {
            o->connect_conc = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--src-addrs")) {
            o->src_addrs = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--server-pid")) {
            char *p = (char *)v;
            while (*p && o->npids < FCB_MAX_PIDS) {
                o->pids[o->npids++] = (int)strtol(p, &p, 10);
                if (*p == ',')
                    p++;
                else
                    break;
            }
        } else if (strcmp(a, "--tls") == 0) {
            o->tls = 1;
        } else if (ARG("--token")) {
            o->token = v;
        } else if (ARG("--token-file")) {
            if ((o->token = read_token(v)) == NULL) return -1;
        } else if (ARG("--churn")) {
            o->churn = (uint32_t)strtoul(v, NULL, 10);
        } else if (ARG("--churn-stage")) {
            if (strcmp(v, "tls") == 0)
                o->stage = FCB_STAGE_TLS;
            else if (strcmp(v, "ws") == 0)
                o->stage = FCB_STAGE_WS;
            else
                goto bad;
        } else if (strcmp(a, "--reconnect") == 0) {
            o->reconnect = 1;
        } else if (strcmp(a, "--no-create") == 0) {
            o->create = 0;
        } else if (ARG("--prefix")) {
            snprintf(o->prefix, sizeof(o->prefix), "%s", v);
        } else if (ARG("--label")) {
            snprintf(o->label, sizeof(o->label), "%s", v);
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else {
            goto bad;
        }
#undef ARG
        continue;
    bad:
        fprintf(stderr, "flowcast-bench: bad option %s%s%s (see --help)\n", a, v ? " " : "",
                v ? v : "");
        return -1;
    }
    if (o->workflows == 0 || o->publishers == 0 || o->publishers > FCB_MAX_PUB ||
        o->pipeline == 0 || o->connect_conc == 0 || o->src_addrs == 0 || o->src_addrs > 254 ||
        o->port <= 0 || o->port > 65535 || o->duration < 0 ||
        (o->token != NULL && strlen(o->token) > FCB_TOKEN_MAX) ||
        (o->token != NULL && o->token[strcspn(o->token, "\r\n")] != '\0')) {
        fprintf(stderr, "flowcast-bench: option out of range (see --help)\n");
        return -1;
    }
    return 0;
}

static const char *target_name(enum fcb_target t)
{
    return t == FCB_WS ? "ws" : t == FCB_NCHAN ? "nchan" : "flowcast";
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void print_hist_json(FILE *f, const char *name, const fcb_hist *h, double scale)
{
    fprintf(f,
            "\"%s\":{\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
            "\"max\":%.1f,\"mean\":%.1f}",
            name, (unsigned long long)h->count, (double)fcb_hist_quantile(h, 0.5) / scale,
            (double)fcb_hist_quantile(h, 0.9) / scale, (double)fcb_hist_quantile(h, 0.99) / scale,
            (double)fcb_hist_quantile(h, 0.999) / scale, (double)fcb_hist_quantile(h, 1.0) / scale,
            fcb_hist_mean(h) / scale);
}

/* CPU seconds as a percentage of one core over the window they were sampled
 * in (publishing plus the drain, which is long for a server that queued a
 * lot: dividing by the publishing time alone showed 149% for one core). */
static double cpu_pct(const fcb_result *r, double cpu_s)
{
    return r->cpu_window_s > 0 ? 100 * cpu_s / r->cpu_window_s : 0;
}

static void report_churn(FILE *f, const fcb_opts *o, const fcb_result *r)
{
    double srv_cpu = r->srv_end.cpu_s - r->srv_start.cpu_s;
    const fcb_hist *ch = &r->connect_hist;
    fprintf(f, "== %s%s%s: connect churn, %u connections, stage %s%s%s\n", target_name(o->target),
            o->label[0] ? " " : "", o->label, o->churn, o->stage == FCB_STAGE_TLS ? "tls" : "ws",
            r->tls_info[0] ? ", " : "", r->tls_info);
    fprintf(f,
            "churn      %llu done, %llu failed in %.3f s = %.0f/s; per connect p50 %.2f ms p99 "
            "%.2f ms; %llu session tickets received\n",
            (unsigned long long)r->churn_done, (unsigned long long)r->churn_failed, r->churn_s,
            r->churn_s > 0 ? (double)r->churn_done / r->churn_s : 0,
            us(fcb_hist_quantile(ch, 0.5)) / 1000, us(fcb_hist_quantile(ch, 0.99)) / 1000,
            (unsigned long long)r->tickets);
    if (r->srv_start.ok && r->srv_end.ok)
        fprintf(f,
                "server     cpu %.2f s (%.1f%% of a core): %.0f per cpu-s, %.1f us per connect\n",
                srv_cpu, cpu_pct(r, srv_cpu), srv_cpu > 0 ? (double)r->churn_done / srv_cpu : 0,
                r->churn_done ? srv_cpu * 1e6 / (double)r->churn_done : 0);
    fprintf(f, "bench      cpu %.2f s (%.1f%% of a core)\n", r->self_cpu_s,
            cpu_pct(r, r->self_cpu_s));
}

static void report(FILE *f, const fcb_opts *o, const fcb_result *r)
{
    if (o->churn > 0) {
        report_churn(f, o, r);
        return;
    }
    double srv_cpu = r->srv_end.cpu_s - r->srv_start.cpu_s;
    double dps = r->span_s > 0 ? (double)r->deliveries / r->span_s : 0;
    double cps = r->run_s > 0 ? (double)r->pub_acked / r->run_s : 0;
    long long rss_delta = (long long)r->srv_connected.rss_kb - (long long)r->srv_before.rss_kb;
    uint32_t measured = r->connected > r->warm ? r->connected - r->warm : 0;
    double rss_per_conn = measured ? (double)rss_delta * 1024.0 / measured : 0;
    int srv = r->srv_start.ok && r->srv_end.ok;
    const fcb_hist *lh = &r->lat_hist, *ah = &r->ack_hist, *ch = &r->connect_hist;
    fprintf(f, "== %s%s%s: %u subscribers on %u workflow(s), %u publisher(s)%s%s\n",
            target_name(o->target), o->label[0] ? " " : "", o->label, o->subscribers, o->workflows,
            o->publishers, r->tls_info[0] ? ", " : "", r->tls_info);
    fprintf(f,
            "connect    %u ok, %u failed in %.3f s; per connection p50 %.2f ms p99 %.2f ms max "
            "%.2f ms\n",
            r->connected, r->connect_failed, r->connect_s, us(fcb_hist_quantile(ch, 0.5)) / 1000,
            us(fcb_hist_quantile(ch, 0.99)) / 1000, us(fcb_hist_quantile(ch, 1)) / 1000);
    if (o->publish) {
        fprintf(f,
                "publish    %llu sent, %llu acked (%.0f/s), %llu errors, %llu unknown; ack p50 "
                "%.0f us p99 %.0f us\n",
                (unsigned long long)r->pub_sent, (unsigned long long)r->pub_acked, cps,
                (unsigned long long)r->pub_errors, (unsigned long long)r->pub_unknown,
                us(fcb_hist_quantile(ah, 0.5)), us(fcb_hist_quantile(ah, 0.99)));
        fprintf(f,
                "deliveries %llu of %llu expected in %.2f s = %.0f/s; lost %llu, duplicates %llu, "
                "out of order %llu, resyncs %llu, unparsed %llu\n",
                (unsigned long long)r->deliveries, (unsigned long long)r->expected, r->span_s, dps,
                (unsigned long long)r->lost, (unsigned long long)r->duplicates,
                (unsigned long long)r->out_of_order, (unsigned long long)r->resyncs,
                (unsigned long long)r->unparsed);
        fprintf(f, "latency    p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us\n",
                us(fcb_hist_quantile(lh, 0.5)), us(fcb_hist_quantile(lh, 0.9)),
                us(fcb_hist_quantile(lh, 0.99)), us(fcb_hist_quantile(lh, 0.999)),
                us(fcb_hist_quantile(lh, 1.0)));
        for (int k = 0; o->nsub_ports > 1 && k < o->nsub_ports; k++) {
            const fcb_hist *ph = &r->lat_port_hist[k];
            if (ph->count)
                fprintf(f, "  port %-5d p50 %.0f us, p99 %.0f us, max %.0f us (%llu deliveries)\n",
                        o->sub_ports[k], us(fcb_hist_quantile(ph, 0.5)),
                        us(fcb_hist_quantile(ph, 0.99)), us(fcb_hist_quantile(ph, 1.0)),
                        (unsigned long long)ph->count);
        }
    }
    if (r->disconnects)
        fprintf(f,
                "storm      %llu drops; all reconnected after %.3f s, all resumed after %.3f s\n",
                (unsigned long long)r->disconnects, r->storm_reconnected_s, r->storm_resumed_s);
    if (srv && o->publish)
        fprintf(f, "server     cpu %.2f s (%.1f%% of a core), %.0f deliveries per cpu-s\n", srv_cpu,
                cpu_pct(r, srv_cpu), srv_cpu > 0 ? (double)r->deliveries / srv_cpu : 0);
    else if (srv)
        fprintf(f, "server     idle cpu %.2f s (%.2f%% of a core)\n", srv_cpu, cpu_pct(r, srv_cpu));
    if (srv)
        fprintf(f,
                "server     rss %llu KiB before, %llu KiB connected, %llu KiB at the end (%.0f B "
                "per connection)\n",
                (unsigned long long)r->srv_before.rss_kb,
                (unsigned long long)r->srv_connected.rss_kb, (unsigned long long)r->srv_end.rss_kb,
                rss_per_conn);
    fprintf(f, "bench      cpu %.2f s (%.1f%% of a core); fd limit %ld\n", r->self_cpu_s,
            cpu_pct(r, r->self_cpu_s), r->fd_limit);
}

static void report_json(FILE *f, const fcb_opts *o, const fcb_result *r)
{
    double srv_cpu = r->srv_end.cpu_s - r->srv_start.cpu_s;
    int srv = r->srv_start.ok && r->srv_end.ok;
    long long rss_delta = (long long)r->srv_connected.rss_kb - (long long)r->srv_before.rss_kb;
    fprintf(f,
            "{\"tool\":\"flowcast-bench\",\"label\":\"%s\",\"target\":\"%s\","
            "\"subscribers\":%u,\"workflows\":%u,\"publishers\":%u,\"pipeline\":%u,"
            "\"rate\":%.1f,\"publish\":%s,\"window\":%u,\"duration_s\":%.3f,",
            o->label, target_name(o->target), o->subscribers, o->workflows, o->publishers,
            o->pipeline, o->rate, o->publish ? "true" : "false", o->window, r->run_s);
    fprintf(f, "\"connected\":%u,\"connect_failed\":%u,\"connect_s\":%.4f,", r->connected,
            r->connect_failed, r->connect_s);
    print_hist_json(f, "connect_ms", &r->connect_hist, 1e6);
    fprintf(f,
            ",\"pub_sent\":%llu,\"pub_acked\":%llu,\"pub_errors\":%llu,\"pub_unknown\":%llu,"
            "\"acked_per_s\":%.1f,",
            (unsigned long long)r->pub_sent, (unsigned long long)r->pub_acked,
            (unsigned long long)r->pub_errors, (unsigned long long)r->pub_unknown,
            r->run_s > 0 ? (double)r->pub_acked / r->run_s : 0);
    print_hist_json(f, "ack_us", &r->ack_hist, 1e3);
    fprintf(f,
            ",\"deliveries\":%llu,\"expected\":%llu,\"span_s\":%.4f,\"deliveries_per_s\":%.1f,"
            "\"lost\":%llu,\"duplicates\":%llu,\"out_of_order\":%llu,\"resyncs\":%llu,"
            "\"unparsed\":%llu,\"disconnects\":%llu,",
            (unsigned long long)r->deliveries, (unsigned long long)r->expected, r->span_s,
            r->span_s > 0 ? (double)r->deliveries / r->span_s : 0, (unsigned long long)r->lost,
            (unsigned long long)r->duplicates, (unsigned long long)r->out_of_order,
            (unsigned long long)r->resyncs, (unsigned long long)r->unparsed,
            (unsigned long long)r->disconnects);
    print_hist_json(f, "latency_us", &r->lat_hist, 1e3);
    /* Per --sub-ports entry, in their order: [{"port":P,"latency_us":{...}}, ...]. */
    if (o->nsub_ports > 1) {
        fprintf(f, ",\"by_port\":[");
        for (int k = 0; k < o->nsub_ports; k++) {
            fprintf(f, "%s{\"port\":%d,", k ? "," : "", o->sub_ports[k]);
            print_hist_json(f, "latency_us", &r->lat_port_hist[k], 1e3);
            fprintf(f, "}");
        }
        fprintf(f, "]");
    }
    if (r->tls_info[0])
        fprintf(f, ",\"tls\":\"%s\",\"tickets\":%llu", r->tls_info, (unsigned long long)r->tickets);
    else
        fprintf(f, ",\"tls\":null");
    if (o->churn > 0)
        fprintf(f,
                ",\"churn\":{\"stage\":\"%s\",\"connections\":%u,\"done\":%llu,\"failed\":%llu,"
                "\"s\":%.4f,"
                "\"per_s\":%.1f,\"per_cpu_s\":%.1f,\"cpu_us_per\":%.2f}",
                o->stage == FCB_STAGE_TLS ? "tls" : "ws", o->churn,
                (unsigned long long)r->churn_done, (unsigned long long)r->churn_failed, r->churn_s,
                r->churn_s > 0 ? (double)r->churn_done / r->churn_s : 0,
                srv && srv_cpu > 0 ? (double)r->churn_done / srv_cpu : 0,
                srv && r->churn_done ? srv_cpu * 1e6 / (double)r->churn_done : 0);
    else
        fprintf(f, ",\"churn\":null");
    fprintf(f, ",\"storm_reconnected_s\":%.4f,\"storm_resumed_s\":%.4f,", r->storm_reconnected_s,
            r->storm_resumed_s);
    if (srv)
        fprintf(f,
                "\"server\":{\"pids\":%d,\"cpu_s\":%.3f,\"cpu_pct\":%.2f,"
                "\"deliveries_per_cpu_s\":%.1f,\"rss_before_kb\":%llu,"
                "\"rss_connected_kb\":%llu,\"rss_end_kb\":%llu,\"rss_per_conn_b\":%.1f},",
                o->npids, srv_cpu, cpu_pct(r, srv_cpu),
                srv_cpu > 0 ? (double)r->deliveries / srv_cpu : 0,
                (unsigned long long)r->srv_before.rss_kb,
                (unsigned long long)r->srv_connected.rss_kb, (unsigned long long)r->srv_end.rss_kb,
                r->connected ? (double)rss_delta * 1024.0 / r->connected : 0);
    else
        fprintf(f, "\"server\":null,");
    fprintf(f, "\"bench\":{\"cpu_s\":%.3f,\"cpu_pct\":%.2f,\"fd_limit\":%ld,\"max_conns\":%ld}}\n",
            r->self_cpu_s, cpu_pct(r, r->self_cpu_s), r->fd_limit, r->max_conns);
}

int main(int argc, char **argv)
{
    fcb_opts o;
    if (parse_opts(argc, argv, &o) < 0) return 2;
    static fcb_result r;
    if (fcb_run(&o, &r) < 0) return 1;
    report(o.json ? stderr : stdout, &o, &r);
    if (o.json) report_json(stdout, &o, &r);
    return 0;
}
