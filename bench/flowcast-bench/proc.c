/* /proc sampling for flowcast-bench (see proc.h). */
#include "proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

static int sample_one(int pid, double *cpu_s, uint64_t *rss_kb)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (read_file(path, buf, sizeof(buf)) < 0) return -1;
    /* Fields after the command name (which may hold spaces): skip to ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL) return -1;
    p += 2; /* field 3: state */
    unsigned long long utime = 0, stime = 0;
    for (int field = 3; field <= 15 && *p; field++) {
        if (field == 14) utime = strtoull(p, NULL, 10);
        if (field == 15) stime = strtoull(p, NULL, 10);
        char *sp = strchr(p, ' ');
        if (sp == NULL) break;
        p = sp + 1;
    }
    long hz = sysconf(_SC_CLK_TCK);
    *cpu_s = (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if (read_file(path, buf, sizeof(buf)) < 0) return -1;
    char *r = strstr(buf, "VmRSS:");
    *rss_kb = r ? strtoull(r + 6, NULL, 10) : 0;
    return 0;
}

void fcb_proc_sample_pids(const int *pids, int n, fcb_proc_sample *s)
{
    memset(s, 0, sizeof(*s));
    s->ok = n > 0;
    for (int i = 0; i < n; i++) {
        double c;
        uint64_t r;
        if (sample_one(pids[i], &c, &r) < 0) {
            s->ok = 0;
            continue;
        }
        s->cpu_s += c;
        s->rss_kb += r;
    }
}

double fcb_proc_self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}
