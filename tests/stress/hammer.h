/*
 * The concurrency hammer (issue 15, "Concurrency"): many threads calling
 * the library at once, every result compared bitwise with a single-threaded
 * reference run of the same problem.
 *
 * A case is one problem of one kind (forward, backward, decode, KV cache,
 * merge, layer), built once by its maker, which also runs it on one thread
 * (num_threads = 1 under a context of its own) and keeps the reference
 * bytes of every output. A worker then runs the case again and again:
 *   - on the case's shared inputs (several threads read the same q, k, v,
 *     compiled mask, cache pages or layer weights at once), or on a private
 *     copy the worker built itself (tp_build from the same seed: the same
 *     bytes);
 *   - under the default context (NULL), one context shared by every
 *     worker, or the worker's own context;
 *   - with num_threads 0 (the context's), 1, 2 or 3, sometimes a caller
 *     workspace;
 * and compares the bytes of every output buffer (views, padding, guards)
 * with the reference. The library promises bitwise equal results for every
 * thread count and whether a call runs on the pool or on a temporary team,
 * so any difference is a failure.
 */
#ifndef ATTN_HAMMER_H
#define ATTN_HAMMER_H

#include "attn.h"
#include "problem.h"
#include "test_common.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What the workers count, per kind of call. */
enum {
  HM_FORWARD,       /* attn_forward (tiled kernel)                */
  HM_DECODE,        /* attn_forward taking the decode path        */
  HM_BACKWARD,      /* attn_backward                              */
  HM_CACHE_APPEND,  /* attn_kv_cache_append                       */
  HM_CACHE_ATTEND,  /* attn_kv_cache_attend                       */
  HM_MERGE,         /* attn_merge                                 */
  HM_MERGE_BWD,     /* attn_merge_backward                        */
  HM_LAYER_FORWARD, /* attn_layer_forward                         */
  HM_MASK_COMPILE,  /* attn_mask_compile (private copies)         */
  HM_CONTEXT,       /* attn_context_create + attn_context_free    */
  HM_NCOUNT
};

extern const char *const hm_count_names[HM_NCOUNT];

/* Where a call runs. */
enum { HM_CTX_DEFAULT, HM_CTX_SHARED, HM_CTX_OWN, HM_CTX_FRESH, HM_NCTX };

/* One worker's state, passed to every run. */
typedef struct hm_worker {
  int id;
  tc_rng rng;
  attn_context *own_ctx; /* this worker's context (NULL for churners)  */
  long counts[HM_NCOUNT];
  long pass, fail;
  void **priv; /* [n_cases] private copies, made on first use */
} hm_worker;

/* How one run of a case is to be made. */
typedef struct hm_run {
  attn_context *ctx; /* NULL = the default context                  */
  int ctx_kind;      /* HM_CTX_*                                      */
  int threads;       /* p.num_threads: 0 (the context's), 1, 2, 3     */
  int private_data;  /* 1: the worker's own copy of the inputs       */
  int workspace;     /* 1: a caller workspace                         */
} hm_run;

/* A kind of case. make builds case i of a run (seed) and its reference
 * (ctx: a context of one thread); run runs it once as r says and returns
 * the number of mismatches (0: every byte as the reference), counting its
 * calls in w->counts; priv_free releases a worker's private copy. */
typedef struct hm_kind {
  const char *name;
  void *(*make)(uint64_t seed, int index, attn_context *ctx);
  int (*run)(void *c, void **priv, hm_worker *w, const hm_run *r);
  void (*priv_free)(void *priv);
  void (*free)(void *c);
  void (*describe)(const void *c, FILE *f);
} hm_kind;

extern const hm_kind hm_kind_forward, hm_kind_decode, hm_kind_backward,
    hm_kind_cache, hm_kind_merge;
#ifdef ATTN_HAMMER_LAYER
extern const hm_kind hm_kind_layer;
#endif

/* Reports a mismatch (the first few in full, then only counted). */
void hm_report(const hm_worker *w, const hm_kind *k, const void *c,
               const hm_run *r, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A run of bytes compared: 0 when equal, else 1 and a report. */
int hm_same(const hm_worker *w, const hm_kind *k, const void *c,
            const hm_run *r, const char *what, const void *got,
            const void *want, size_t bytes);

/* A copy of n bytes (exits when out of memory); NULL for n == 0. */
void *hm_dup(const void *src, size_t n);

/* A 64-byte aligned caller workspace of bytes (free with free()). */
void *hm_workspace(size_t bytes, void **aligned);

/* Threads of a call: r->threads. */
static inline int hm_threads(const hm_run *r) { return r->threads; }

#endif /* ATTN_HAMMER_H */
