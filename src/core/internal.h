/* Internal declarations shared by the library's layers. Not installed. */
#ifndef ATTN_CORE_INTERNAL_H
#define ATTN_CORE_INTERNAL_H

#include <attn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#define ATTN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ATTN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ATTN_MAX_HEAD_DIM 256
#define ATTN_MAX_THREADS 256 /* per call; more are clamped */

/* Writes a formatted reason to p->error_message (if any); returns st. */
attn_status attn_fail(const attn_params *p, attn_status st, const char *fmt,
                      ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The call after validation: every size resolved, every option checked. */
typedef struct attn_problem {
  const attn_params *p;
  int64_t batch;  /* sequences: q.shape[0], or varlen_batch        */
  int64_t hq, hk; /* query heads, key/value heads                  */
  int64_t group;  /* hq / hk                                       */
  int64_t d, dv;  /* head dims of Q/K and of V/O                   */
  int64_t sq_max; /* longest query sequence                        */
  int64_t sk_max; /* longest key sequence (before kv_lens)         */
  int varlen;     /* cu_seqlens given                              */
  float scale;    /* resolved scale                                */
} attn_problem;

/* Position and length of sequence b in the Q and K tensors. */
typedef struct attn_seq {
  int64_t b;     /* batch index for bias, mask, lse                       */
  int64_t q_off; /* first row in q/o's seq axis                           */
  int64_t k_off; /* first row in k/v's seq axis                           */
  int64_t q_bat; /* batch index in q/o (0 when varlen)                    */
  int64_t sq;    /* query rows                                            */
  int64_t sk;    /* key rows actually attended (kv_lens applied)          */
} attn_seq;

/* Copies the caller's attn_params of `size` bytes (their attn.h's sizeof)
 * over defaults into *out; ATTN_ERR_ABI for a size no release declared. */
attn_status attn_params_import(const attn_params *p, size_t size,
                               attn_params *out);

attn_status attn_validate(const attn_params *p, attn_problem *out);
/* attn_validate plus the backward's operands (validate_bwd.c). */
attn_status attn_validate_bwd(const attn_params *p, attn_problem *out);
/* Byte range [lo, hi) a valid view touches; 0 on overflow. */
int attn_tensor_extent(const attn_tensor *t, uintptr_t *lo, uintptr_t *hi);
/* 1 when two index tuples of t reach the same element. */
int attn_tensor_self_aliases(const attn_tensor *t);
void attn_problem_seq(const attn_problem *pr, int64_t b, attn_seq *s);

/* Dtype conversion of n elements with a source stride (elements). */
void attn_load_row_f32(const void *src, attn_dtype dt, int64_t stride,
                       int64_t n, float mul, float *dst);
void attn_store_row(const float *src, int64_t n, void *dst, attn_dtype dt,
                    int64_t stride);

/* Workspace of one call: p->workspace if set (checked against need), else
 * malloc (returned in *owned, for the caller to free). *base is aligned to
 * ATTN_WORKSPACE_ALIGN; need must include that much slack. */
#define ATTN_WORKSPACE_ALIGN 64
attn_status attn_workspace_acquire(const attn_params *p, size_t need,
                                   void **owned, char **base);

/* CPU features: cached after the first call (thread-safe). */
int attn_cpu_has_avx2(void);
int attn_cpu_has_avx512(void);
/* Resolves AUTO and checks support. */
attn_status attn_isa_resolve(const attn_context *ctx, attn_isa want,
                             attn_isa *out);
int attn_context_threads(const attn_context *ctx);

/* Threads: runs fn(arg, tid, nthreads) on up to n threads (the caller is
 * tid 0). nthreads may come out lower than n if a thread cannot start. */
typedef struct attn_team attn_team;
typedef void (*attn_team_fn)(void *arg, attn_team *team, int tid, int nthreads);
attn_status attn_team_run(int n, attn_team_fn fn, void *arg);
void attn_team_barrier(attn_team *team);

/* FMA peak micro-kernels (per ISA). */
double attn_peak_loop_generic(int64_t iters);
double attn_peak_loop_avx2(int64_t iters);
double attn_peak_loop_avx512(int64_t iters);

#endif
