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
/* The same for any struct's message buffer (attn_merge_params,
 * attn_linear_params ...): writes to buf when buf and size are set. */
attn_status attn_fail_to(char *buf, size_t size, attn_status st,
                         const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
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
/* The options appended in 0.2 (validate_opts.c), called by attn_validate. */
attn_status attn_validate_opts(const attn_params *p, const attn_problem *pr);
/* ATTN_ERR_OVERLAP when the output bytes [lo, hi) named `what` overlap
 * alibi_slopes, kv_lens, cu_seqlens or the position offset arrays. */
attn_status attn_check_aux_overlap(const attn_params *p, const attn_problem *pr,
                                   uintptr_t lo, uintptr_t hi,
                                   const char *what);
/* attn_validate plus the backward's operands (validate_bwd.c). */
attn_status attn_validate_bwd(const attn_params *p, attn_problem *out);
/* Byte range [lo, hi) a valid view touches; 0 on overflow. */
int attn_tensor_extent(const attn_tensor *t, uintptr_t *lo, uintptr_t *hi);
/* 1 when two index tuples of t reach the same element. */
int attn_tensor_self_aliases(const attn_tensor *t);
void attn_problem_seq(const attn_problem *pr, int64_t b, attn_seq *s);

/* GGUF's quantised blocks (attn.h, ATTN_DTYPE_Q8_0 / Q4_0): values per
 * block and bytes per block (an f16 scale, then the quants). */
#define ATTN_QBLOCK 32
#define ATTN_Q8_0_BYTES 34
#define ATTN_Q4_0_BYTES 18
static inline int attn_dtype_is_quant(attn_dtype dt) {
  return dt == ATTN_DTYPE_Q8_0 || dt == ATTN_DTYPE_Q4_0;
}
/* n values (a multiple of ATTN_QBLOCK) of f32 src quantised into n / 32
 * adjacent blocks of dt at dst, ggml's rule (convert.c); and back, each
 * value times mul. */
void attn_quant_row(const float *src, int64_t n, void *dst, attn_dtype dt);
void attn_dequant_row(const void *src, attn_dtype dt, int64_t n, float mul,
                      float *dst);
/* Bytes of one row of n values (element stride st): the blocks of a
 * quantised row, else ((n - 1) st + 1) elements. */
static inline int64_t attn_row_bytes(attn_dtype dt, int64_t st, int64_t n) {
  if (attn_dtype_is_quant(dt))
    return n / ATTN_QBLOCK * (int64_t)attn_dtype_size(dt);
  return ((n - 1) * st + 1) * (int64_t)attn_dtype_size(dt);
}

/* Dtype conversion of n elements with a source stride (elements; for the
 * quantised dtypes the row's blocks must be adjacent and n a multiple of
 * 32: the stride is ignored). */
void attn_load_row_f32(const void *src, attn_dtype dt, int64_t stride,
                       int64_t n, float mul, float *dst);
void attn_store_row(const float *src, int64_t n, void *dst, attn_dtype dt,
                    int64_t stride);
/* attn_load_row_f32 and then, if one of the n results is not finite, the
 * whole row NaN (returns 1; else 0): a non-finite Q or K row must make
 * every score it enters NaN (an inf times a key of the wrong sign would
 * otherwise look like a mask). The test: a non-finite float has an all-ones
 * exponent, and adding one to the exponent field then carries into the
 * sign bit (integer AND, ADD and OR; vectorised). One pass where the row is
 * contiguous f32, bf16 or f16 and the CPU has AVX2 (and F16C). */
int attn_load_row_poison(const void *src, attn_dtype dt, int64_t stride,
                         int64_t n, float mul, float *dst);
#if defined(ATTN_HAVE_X86)
/* dst[i] = f16 src[i] * mul, and dst[i] = f16(src[i]), with F16C
 * (kernels/avx2/convert_f16c.c); only where attn_cpu_has_avx2().
 * attn_load_row_f32 and attn_store_row take them by themselves. */
void attn_f16_row_f16c(const uint16_t *src, int64_t n, float mul, float *dst);
void attn_f16_store_f16c(const float *src, int64_t n, uint16_t *dst);
/* Four f16 key rows r[0..3] (unit stride, d elements) widened into columns
 * 0..3 of a forward panel of nr keys (kp[kk * nr + i] = r[i][kk]): the
 * bits of widening each row, then packing it. Returns 0 if a row holds an
 * infinity or a NaN, having written garbage the caller's row path then
 * overwrites (fwd_pack.c). Only where attn_cpu_has_avx2(). */
int attn_f16_pack_keys4_f16c(const uint16_t *const r[4], int64_t d, int64_t nr,
                             float *kp);
void attn_bf16_store_avx2(const float *src, int64_t n, uint16_t *dst);
void attn_bf16_store_avx512(const float *src, int64_t n, uint16_t *dst);
int attn_row_load_avx2(const void *src, attn_dtype dt, int64_t n, float mul,
                       float *dst);
#endif
/* Asks the cache for the bytes of a row of n elements of dt (stride 1)
 * at src, ahead of its use: rows of one head sit a whole token apart
 * (heads x head_dim), a stride the hardware prefetchers do not follow,
 * so a loop over rows is otherwise bound by memory latency. write: the
 * row will be written. A hint; no effect where the compiler has none. */
static inline void attn_prefetch_row(const void *src, attn_dtype dt, int64_t n,
                                     int write) {
#if defined(__GNUC__) || defined(__clang__)
  const char *c = (const char *)src;
  const int64_t bytes = n * (dt == ATTN_DTYPE_F32 ? 4 : 2);
  for (int64_t o = 0; o < bytes; o += 64) {
    if (write)
      __builtin_prefetch(c + o, 1, 2);
    else
      __builtin_prefetch(c + o, 0, 2);
  }
#else
  (void)src, (void)dt, (void)n, (void)write;
#endif
}

/* Workspace of one call: p->workspace if set (checked against need), else
 * an allocation (returned in *owned, for attn_workspace_release). *base is
 * aligned to ATTN_WORKSPACE_ALIGN; need must include that much slack. With
 * a context (ctx not NULL), a large workspace (ATTN_SPARE_MIN_BYTES ..
 * ATTN_SPARE_MAX_BYTES) is taken from the context's spare when that is
 * big enough, and released into it (workspace.c). */
#define ATTN_WORKSPACE_ALIGN 64
#define ATTN_SPARE_MIN_BYTES ((size_t)8 << 20)
#define ATTN_SPARE_MAX_BYTES ((size_t)64 << 20)
attn_status attn_workspace_acquire(attn_context *ctx, const attn_params *p,
                                   size_t need, void **owned, char **base);
void attn_workspace_release(attn_context *ctx, void *owned);
/* Exchanges the context's spare workspace block (NULL: none) for block;
 * returns the one it held. Thread-safe (context.c). */
void *attn_context_spare_swap(attn_context *ctx, void *block);

/* The machine's online CPUs, as first read in this process (cpu.c). */
int attn_cpu_count(void);
/* CPU features: cached after the first call (thread-safe). */
int attn_cpu_has_avx2(void);
int attn_cpu_has_avx512(void);
int attn_cpu_has_avx512bf16(void);
int attn_cpu_has_amxbf16(void);
/* Resolves AUTO (the context's ISA; ctx NULL = the default context's, or
 * attn_isa_best() when it cannot be made) and checks support. */
attn_status attn_isa_resolve(const attn_context *ctx, attn_isa want,
                             attn_isa *out);
/* The ISA the environment asks for: ATTN_ISA unset, empty or "auto" gives
 * the widest supported. ATTN_ERR_INVALID_ARGUMENT for a value that names
 * no ISA, ATTN_ERR_UNSUPPORTED_ISA for one this CPU lacks; the reason then
 * goes to why (if why_size > 0). attn_isa_best() is the tolerant form. */
attn_status attn_isa_env(attn_isa *out, char *why, size_t why_size);

/* Contexts (context.c). ctx == NULL means the default context: made
 * lazily (thread-safe) from the environment, never freed. */
typedef struct attn_pool attn_pool;
/* *out = ctx, or the default context. When the default context cannot be
 * made because ATTN_NUM_THREADS or ATTN_ISA is bad: ATTN_ERR_INVALID_ARGUMENT
 * or ATTN_ERR_UNSUPPORTED_ISA, with the reason through attn_fail(p, ...). */
attn_status attn_context_resolve(attn_context *ctx, const attn_params *p,
                                 attn_context **out);
/* The context's thread count (ctx NULL: the default context's, or the
 * tolerant reading of the environment when it cannot be made). */
int attn_context_threads(const attn_context *ctx);
/* The context's pool (ctx NULL: the default context's; NULL when that
 * cannot be made). */
attn_pool *attn_context_pool(attn_context *ctx);

/* Threads (threads.c): runs fn(arg, team, tid, nthreads) on up to n
 * threads (the caller is tid 0) and returns when every thread is done.
 * nthreads may come out lower than n if a thread cannot start; the call
 * still succeeds (these return ATTN_OK). attn_team_barrier: a barrier
 * across the team. attn_team_run_ctx uses ctx's pool (NULL: the default
 * context's); when that pool is busy with another call it runs on a
 * temporary team started for this call. attn_team_run(n, ...) is
 * attn_team_run_ctx(NULL, n, ...). */
typedef struct attn_team attn_team;
typedef void (*attn_team_fn)(void *arg, attn_team *team, int tid, int nthreads);
attn_status attn_team_run_ctx(attn_context *ctx, int n, attn_team_fn fn,
                              void *arg);
attn_status attn_team_run(int n, attn_team_fn fn, void *arg);
void attn_team_barrier(attn_team *team);
/* A pool with no workers yet (they start on demand); NULL when out of
 * memory. attn_pool_free joins the workers; accepts NULL. */
attn_pool *attn_pool_create(void);
void attn_pool_free(attn_pool *pool);

/* FMA peak micro-kernels (per ISA). */
double attn_peak_loop_generic(int64_t iters);
double attn_peak_loop_avx2(int64_t iters);
double attn_peak_loop_avx512(int64_t iters);
double attn_peak_loop_avx512bf16(int64_t iters);
double attn_peak_loop_amxbf16(int64_t iters);

#endif
