/* attn_fma_peak_gflops: this machine's f32 FMA throughput, measured with
 * the widest supported ISA on every thread of a team. */
#include "kernels/table.h"

#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef double (*peak_fn)(int64_t iters);

typedef struct peak_job {
  int64_t iters;
  peak_fn loop;
  double flops[1024];
} peak_job;

static void peak_worker(void *arg, attn_team *team, int tid, int n) {
  (void)n;
  peak_job *job = (peak_job *)arg;
  attn_team_barrier(team);
  job->flops[tid] = job->loop(job->iters);
}

static attn_status measure(peak_fn loop, int num_threads, double seconds,
                           double *gflops);

static attn_kernels widest_table(void) {
  attn_kernels t;
  attn_kernels_for(attn_isa_supported(ATTN_ISA_AMX_BF16) ? ATTN_ISA_AMX_BF16
                   : attn_isa_supported(ATTN_ISA_AVX512_BF16)
                       ? ATTN_ISA_AVX512_BF16
                   : attn_isa_supported(ATTN_ISA_AVX512) ? ATTN_ISA_AVX512
                   : attn_isa_supported(ATTN_ISA_AVX2)   ? ATTN_ISA_AVX2
                                                         : ATTN_ISA_GENERIC,
                   &t);
  return t;
}

attn_status attn_fma_peak_gflops(int num_threads, double seconds,
                                 double *gflops) {
  return measure(widest_table().peak_loop, num_threads, seconds, gflops);
}

attn_status attn_bf16_peak_gflops(int num_threads, double seconds,
                                  double *gflops) {
  const peak_fn loop = widest_table().peak_loop_bf16;
  if (gflops && !loop)
    return ATTN_ERR_UNSUPPORTED_ISA;
  return measure(loop, num_threads, seconds, gflops);
}

static attn_status measure(peak_fn loop, int num_threads, double seconds,
                           double *gflops) {
  if (!gflops)
    return ATTN_ERR_NULL_POINTER;
  if (num_threads < 0 || num_threads > ATTN_MAX_THREADS || !(seconds > 0) ||
      seconds > 3600)
    return ATTN_ERR_INVALID_ARGUMENT;
  if (num_threads == 0)
    num_threads = attn_context_threads(NULL);
  if (num_threads > 1024)
    num_threads = 1024;
  /* Calibrate on one thread, then run the team for about `seconds`. */
  int64_t iters = 1 << 16;
  double t0 = now(), dt = 0;
  for (;;) {
    t0 = now();
    loop(iters);
    dt = now() - t0;
    if (dt > 0.02 || iters > ((int64_t)1 << 40))
      break;
    iters *= 4;
  }
  iters = (int64_t)((double)iters * (seconds / 3.0) / (dt > 0 ? dt : 1e-3));
  if (iters < 1)
    iters = 1;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    peak_job job;
    job.iters = iters;
    job.loop = loop;
    for (int i = 0; i < num_threads; i++)
      job.flops[i] = 0;
    t0 = now();
    attn_status st = attn_team_run(num_threads, peak_worker, &job);
    dt = now() - t0;
    if (st != ATTN_OK)
      return st;
    double total = 0;
    for (int i = 0; i < num_threads; i++)
      total += job.flops[i];
    const double g = total / dt * 1e-9;
    if (g > best)
      best = g;
  }
  *gflops = best;
  return ATTN_OK;
}
