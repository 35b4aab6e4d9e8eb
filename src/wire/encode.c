/* The wire format: hand-written JSON encoders for workflows, update messages
 * and error bodies (the per-change hot path). */
#include "wire/wire.h"
#include "common/time.h"

#include <stdlib.h>
#include <string.h>

/* Room for every key, punctuation, up to five 20-digit integers and two
 * timestamps in any one message; strings are measured and added on top, so
 * the first malloc is almost always the only one. */
#define ENC_FIXED_BYTES 320

/* Output buffer. On allocation failure p becomes NULL and later writes are no-ops,
 * so encoders check for OOM once, at the end. */
typedef struct enc {
    char *p;
    size_t len;
    size_t cap;
} enc;

static void enc_init(enc *e, size_t hint)
{
    e->len = 0;
    e->cap = hint;
    e->p = malloc(hint);
}

/* Ensures n more bytes fit; grows geometrically if the estimate was short. */
static inline bool enc_reserve(enc *e, size_t n)
{
    if (!e->p) return false;
    if (e->len + n <= e->cap) return true;
    size_t cap = e->cap * 2 > e->len + n ? e->cap * 2 : e->len + n;
    char *np = realloc(e->p, cap);
    if (!np) {
        free(e->p);
        e->p = NULL;
        return false;
    }
    e->p = np;
    e->cap = cap;
    return true;
}

static inline void enc_raw(enc *e, const char *s, size_t n)
{
    if (!enc_reserve(e, n)) return;
    memcpy(e->p + e->len, s, n);
    e->len += n;
}

#define enc_lit(e, s) enc_raw((e), (s), sizeof(s) - 1)

/* NUL-terminates and hands the buffer to the caller. */
static char *enc_finish(enc *e, size_t *len)
{
    enc_raw(e, "", 1);
    if (!e->p) return NULL;
    if (len) *len = e->len - 1;
    return e->p;
}

static void enc_int(enc *e, int64_t v)
{
    char tmp[21];
    size_t i = sizeof tmp;
    /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    enc_raw(e, tmp + i, sizeof tmp - i);
}

static void enc_time(enc *e, int64_t ms)
{
    char ts[FC_TIME_RFC3339_LEN + 1];
    fc_time_format_rfc3339(ms, ts);
    enc_lit(e, "\"");
    enc_raw(e, ts, strlen(ts));
    enc_lit(e, "\"");
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when the byte starts none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0xC2 || c > 0xF4 || n < len) return 0;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* 1 for bytes copied as they are: printable ASCII except '"' and '\\'. A table
 * keeps the per-byte test of the measuring loop to one load. */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x80-0xFF: UTF-8 lead and continuation bytes, validated separately */
};

static inline bool is_plain(unsigned c)
{
    return plain[c];
}

static bool is_line_sep(const unsigned char *s, size_t n)
{
    return n == 3 && s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9);
}

/* For a byte that is not plain ASCII: sets *in to the input bytes it covers
 * and returns how many output bytes they become. Invalid UTF-8 becomes
 * \ufffd so the output is always valid JSON, whatever the input. */
static size_t special_len(const unsigned char *s, size_t n, size_t *in)
{
    unsigned c = s[0];
    *in = 1;
    if (c == '"' || c == '\\') return 2;
    if (c < 0x20) return c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t' ? 2 : 6;
    size_t u = utf8_len(s, n);
    if (u == 0) return 6;
    *in = u;
    return is_line_sep(s, u) ? 6 : u;
}

/* Length of s once escaped, without the surrounding quotes. */
static size_t escaped_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t out = 0, i = 0, in;
    while (i < n) {
        if (is_plain(s[i])) {
            out++;
            i++;
            continue;
        }
        out += special_len(s + i, n - i, &in);
        i += in;
    }
    return out;
}

/* Writes the escape for the special sequence at s, which covers `in` bytes. */
static char *write_escape(char *d, const unsigned char *s, size_t in)
{
    static const char hex[] = "0123456789abcdef";
    static const char shorts[] = "btn\0fr"; /* \b=8 \t=9 \n=10 \f=12 \r=13 */
    unsigned c = s[0];
    *d++ = '\\';
    if (c == '"' || c == '\\') {
        *d++ = (char)c;
    } else if (c >= 8 && c <= 13 && shorts[c - 8]) {
        *d++ = shorts[c - 8];
    } else if (c < 0x20) {
        memcpy(d, "u00", 3);
        d[3] = hex[c >> 4];
        d[4] = hex[c & 15];
        d += 5;
    } else {
        memcpy(d, is_line_sep(s, in) ? (s[2] == 0xA8 ? "u2028" : "u2029") : "ufffd", 5);
        d += 5;
    }
    return d;
}

static char *write_escaped(char *d, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, in;
    while (i < n) {
        size_t run = i;
        while (run < n && is_plain(s[run]))
            run++;
        memcpy(d, s + i, run - i);
        d += run - i;
        if ((i = run) == n) break;
        size_t out = special_len(s + i, n - i, &in);
        if (out == in) {
            memcpy(d, s + i, in); /* valid multi-byte UTF-8 passes through */
            d += in;
        } else {
            d = write_escape(d, s + i, in);
        }
        i += in;
    }
    return d;
}

/* A string to encode, measured once so the buffer can be sized up front. */
typedef struct jstr {
    const char *s;
    size_t n;
    size_t esc;
} jstr;

static jstr measure(const char *s)
{
    jstr j = {s ? s : "", 0, 0};
    j.n = strlen(j.s);
    j.esc = escaped_len(j.s, j.n);
    return j;
}

static void enc_str(enc *e, const jstr *j)
{
    if (!enc_reserve(e, j->esc + 2)) return;
    char *d = e->p + e->len;
    *d++ = '"';
    /* Escapes only ever grow the text, so equal lengths mean nothing to escape. */
    if (j->esc == j->n) {
        memcpy(d, j->s, j->n);
        d += j->n;
    } else {
        d = write_escaped(d, j->s, j->n);
    }
    *d++ = '"';
    e->len = (size_t)(d - e->p);
}

/* ,"status":..,"current_step":..,"total_steps":..,"message":.. — shared by the
 * workflow object and the update message. */
static void enc_progress(enc *e, const fc_workflow *w, const jstr *msg)
{
    const char *status = fc_status_name(w->status);
    enc_lit(e, ",\"status\":\"");
    enc_raw(e, status, strlen(status));
    enc_lit(e, "\",\"current_step\":");
    enc_int(e, w->current_step);
    enc_lit(e, ",\"total_steps\":");
    enc_int(e, w->total_steps);
    enc_lit(e, ",\"message\":");
    enc_str(e, msg);
}

char *fc_wire_workflow(const fc_workflow *w, size_t *len)
{
    jstr id = measure(w->id), name = measure(w->name), msg = measure(w->message);
    enc e;
    enc_init(&e, ENC_FIXED_BYTES + id.esc + name.esc + msg.esc);
    enc_lit(&e, "{\"id\":");
    enc_str(&e, &id);
    enc_lit(&e, ",\"epoch\":");
    enc_int(&e, w->epoch);
    enc_lit(&e, ",\"name\":");
    enc_str(&e, &name);
    enc_progress(&e, w, &msg);
    enc_lit(&e, ",\"seq\":");
    enc_int(&e, w->seq);
    enc_lit(&e, ",\"created_at\":");
    enc_time(&e, w->created_at_ms);
    enc_lit(&e, ",\"updated_at\":");
    enc_time(&e, w->updated_at_ms);
    enc_lit(&e, "}");
    return enc_finish(&e, len);
}

char *fc_wire_update(const fc_workflow *w, int resync, size_t *len)
{
    jstr id = measure(w->id), name = measure(w->name), msg = measure(w->message);
    enc e;
    enc_init(&e, ENC_FIXED_BYTES + id.esc + name.esc + msg.esc);
    enc_lit(&e, "{\"workflow_id\":");
    enc_str(&e, &id);
    enc_lit(&e, ",\"epoch\":");
    enc_int(&e, w->epoch);
    /* The name, so that a watcher meeting the workflow on a stream needs no
     * GET for it. Every stored workflow has one; a caller holding a state
     * without it (an empty name) sends none rather than a wrong "". */
    if (name.n) {
        enc_lit(&e, ",\"name\":");
        enc_str(&e, &name);
    }
    enc_progress(&e, w, &msg);
    enc_lit(&e, ",\"timestamp\":");
    enc_time(&e, w->updated_at_ms);
    enc_lit(&e, ",\"seq\":");
    enc_int(&e, w->seq);
    if (resync) enc_lit(&e, ",\"resync\":true");
    enc_lit(&e, "}");
    return enc_finish(&e, len);
}

char *fc_wire_deleted(const fc_workflow *w, int64_t deleted_at_ms, size_t *len)
{
    jstr id = measure(w->id);
    enc e;
    enc_init(&e, ENC_FIXED_BYTES + id.esc);
    enc_lit(&e, "{\"workflow_id\":");
    enc_str(&e, &id);
    enc_lit(&e, ",\"epoch\":");
    enc_int(&e, w->epoch);
    enc_lit(&e, ",\"deleted\":true,\"seq\":");
    enc_int(&e, w->seq);
    enc_lit(&e, ",\"timestamp\":");
    enc_time(&e, deleted_at_ms);
    enc_lit(&e, "}");
    return enc_finish(&e, len);
}

char *fc_wire_error(const char *code, const char *message, size_t *len)
{
    jstr c = measure(code), m = measure(message);
    enc e;
    enc_init(&e, ENC_FIXED_BYTES + c.esc + m.esc);
    enc_lit(&e, "{\"error\":{\"code\":");
    enc_str(&e, &c);
    enc_lit(&e, ",\"message\":");
    enc_str(&e, &m);
    enc_lit(&e, "}}");
    return enc_finish(&e, len);
}
