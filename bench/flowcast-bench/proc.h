/* Samples a process's CPU time and resident memory from /proc, and this
 * process's own CPU time. */
#ifndef FCB_PROC_H
#define FCB_PROC_H

#include <stdint.h>

typedef struct fcb_proc_sample {
    double cpu_s;    /* user + system seconds, summed over the pids */
    uint64_t rss_kb; /* VmRSS, summed over the pids */
    int ok;          /* every pid could be read */
} fcb_proc_sample;

/* Samples up to n pids (n may be 0: an empty sample with ok = 0). */
void fcb_proc_sample_pids(const int *pids, int n, fcb_proc_sample *s);
/* This process's user + system CPU seconds. */
double fcb_proc_self_cpu(void);

#endif
