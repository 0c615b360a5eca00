/* attn_read_bandwidth_gbps: this machine's memory read bandwidth, the
 * target of the decode kernel (DESIGN.md section 7: decode is memory
 * bound).
 *
 * Method. One buffer of 8x the last-level cache (read from sysfs; 32 MiB
 * assumed when unknown), at least 256 MiB and at most 1 GiB, so that no
 * cache holds a useful part of it. Every thread of a team first writes
 * its share (first touch: its pages are local to it), then each pass has
 * every thread read its share once (plain C the compiler vectorises: XOR
 * of 64-bit words into 8 independent accumulators, the cheapest way to
 * consume a load, with a software prefetch 4 KiB ahead). A pass is timed around
 * the whole team (wake-up included, microseconds against tens of milliseconds);
 * passes repeat for about `seconds` (at least 5), and the result is the median
 * pass, in 1e9 bytes per second. Reads only: a decode reads K and V and writes
 * almost nothing, so a copy or triad figure would be the wrong target.
 * On Linux the buffer is 2 MiB aligned and advised to use transparent huge
 * pages, as `attn decode` does for its cache: both sides of the ratio
 * then stream without a TLB miss per 4 KiB page. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#endif
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* bytes (a multiple of 2 MiB) for the probe's buffer, huge pages advised. */
static void *bw_alloc(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  void *p = NULL;
  if (posix_memalign(&p, (size_t)2 << 20, bytes) != 0)
    return NULL;
  (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: 4 KiB pages if not */
  return p;
#else
  return malloc(bytes);
#endif
}

#define BW_MIN_BYTES ((size_t)256 << 20)
#define BW_MAX_BYTES ((size_t)1 << 30)
#define BW_MAX_PASSES 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Size of the largest cache in bytes (sysfs), or 32 MiB when unknown. */
static size_t llc_bytes(void) {
  size_t best = 0;
  for (int idx = 0; idx < 8; idx++) {
    char path[96], buf[32];
    snprintf(path, sizeof path,
             "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    if (fgets(buf, sizeof buf, f)) {
      char *end = NULL;
      unsigned long long v = strtoull(buf, &end, 10);
      if (end && (*end == 'K' || *end == 'k'))
        v <<= 10;
      else if (end && (*end == 'M' || *end == 'm'))
        v <<= 20;
      if (v > best)
        best = (size_t)v;
    }
    fclose(f);
  }
  return best ? best : (size_t)32 << 20;
}

typedef struct bw_job {
  uint64_t *buf;
  size_t words; /* 64-bit words in buf                 */
  int touch;    /* 1: write the shares (first touch)  */
  uint64_t sink[ATTN_MAX_THREADS];
} bw_job;

/* Words a pass asks for ahead of its reads (4 KiB): the hardware
 * prefetchers alone left one Intel Xeon thread (family 6 model 207) at
 * about half the rate it streams at with this hint, and below what the
 * decode kernel, which prefetches, then moved (docs/decisions.md). */
#define BW_AHEAD 512

static uint64_t read_share(const uint64_t *p, size_t n) {
  uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + BW_AHEAD + 8 <= n; i += 8) {
    __builtin_prefetch(p + i + BW_AHEAD);
    for (int k = 0; k < 8; k++)
      a[k] ^= p[i + k];
  }
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++)
      a[k] ^= p[i + k];
  return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

static void bw_worker(void *arg, attn_team *team, int tid, int n) {
  bw_job *job = (bw_job *)arg;
  /* Shares of whole 64-byte lines. */
  const size_t lines = job->words / 8;
  const size_t l0 = lines * (size_t)tid / (size_t)n;
  const size_t l1 = lines * (size_t)(tid + 1) / (size_t)n;
  uint64_t *p = job->buf + l0 * 8;
  const size_t words = (l1 - l0) * 8;
  if (job->touch) {
    for (size_t i = 0; i < words; i++)
      p[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    return;
  }
  attn_team_barrier(team);
  job->sink[tid] = read_share(p, words);
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

attn_status attn_read_bandwidth_gbps(int num_threads, double seconds,
                                     double *gbps) {
  if (!gbps)
    return ATTN_ERR_NULL_POINTER;
  if (num_threads < 0 || num_threads > ATTN_MAX_THREADS || !(seconds > 0) ||
      seconds > 3600)
    return ATTN_ERR_INVALID_ARGUMENT;
  if (num_threads == 0)
    num_threads = ATTN_MIN(attn_context_threads(NULL), ATTN_MAX_THREADS);
  size_t bytes = 8 * llc_bytes();
  bytes = ATTN_MAX(bytes, BW_MIN_BYTES);
  bytes = ATTN_MIN(bytes, BW_MAX_BYTES);
  bytes =
      (bytes + ((size_t)2 << 20) - 1) / ((size_t)2 << 20) * ((size_t)2 << 20);
  bw_job *job = malloc(sizeof *job);
  if (!job)
    return ATTN_ERR_OUT_OF_MEMORY;
  job->buf = bw_alloc(bytes);
  if (!job->buf) {
    free(job);
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  job->words = bytes / sizeof(uint64_t);
  job->touch = 1;
  attn_status st = attn_team_run(num_threads, bw_worker, job);
  job->touch = 0;
  double rate[BW_MAX_PASSES];
  int passes = 0;
  const double t_end = now() + seconds;
  while (st == ATTN_OK && passes < BW_MAX_PASSES &&
         (passes < 5 || now() < t_end)) {
    const double t0 = now();
    st = attn_team_run(num_threads, bw_worker, job);
    const double dt = now() - t0;
    rate[passes++] =
        (double)(job->words / 8 * 64) / (dt > 0 ? dt : 1e-9) * 1e-9;
  }
  free(job->buf);
  free(job);
  if (st != ATTN_OK)
    return st;
  qsort(rate, (size_t)passes, sizeof rate[0], cmp_double);
  *gbps = passes % 2 ? rate[passes / 2]
                     : 0.5 * (rate[passes / 2 - 1] + rate[passes / 2]);
  return ATTN_OK;
}
