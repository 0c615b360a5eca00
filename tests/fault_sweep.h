/*
 * fault_sweep.h - the driver of the fault tests (test_faults*.c): one public
 * call, run first with counting to learn its N allocations (and thread
 * creations), then N more times with the n-th allocation failing, n = 1..N.
 * Every failed try must
 *   - return the documented status (ATTN_ERR_OUT_OF_MEMORY unless the case
 *     says otherwise) with a reason in the call's message buffer (where it
 *     has one), or ATTN_OK with the reference result (a fallback that does
 *     without the memory: counted apart, as "absorbed");
 *   - leave no new live allocation (fault_inject.h's account, after
 *     releasing what a successful call returned);
 *   - leave the objects it was given as they were (cases with a state
 *     digest: caches, linear states, layers);
 *   - leave them usable: the next unarmed call succeeds with bitwise the
 *     reference result.
 * Thread creation (fault_threads): a fresh context per try, the n-th
 * pthread_create failing (alone, then with every later one): the call
 * must succeed with the reference bits (attn.h: a thread that cannot start
 * is replaced by running its share on the caller).
 *
 * Include after fault_inject.h and test_common.h, in one file of the
 * program, which defines `long n_pass, n_fail`.
 */
#ifndef ATTN_TEST_FAULT_SWEEP_H
#define ATTN_TEST_FAULT_SWEEP_H

#include "attn.h"
#include "fault_inject.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct fault_case {
  const char *name;
  void *st;
  /* before every try: restore inputs and objects, poison outputs (NULL:
   * nothing to do) */
  void (*prepare)(void *st);
  attn_status (*call)(void *st);
  /* the results of a successful call (outputs, objects returned) */
  uint64_t (*digest)(void *st);
  /* frees what a successful call returned (NULL: nothing) */
  void (*release)(void *st);
  /* the call's message buffer (NULL: it has none); cleared before a try */
  char *msg;
  size_t msg_size;
  /* optional: digest of the objects a failing call must leave unchanged */
  uint64_t (*state)(void *st);
  /* status an allocation failure must give (0: ATTN_ERR_OUT_OF_MEMORY) */
  int oom_status;
  /* the context the call runs under, for fault_threads (NULL: none) */
  attn_context **ctx;
  int ctx_threads;
  /* at most this many failing tries (0: every allocation): the first and
   * last quarter and evenly spaced ones between; for calls that take
   * seconds (the models' loaders) */
  long max_tries;
} fault_case;

/* Whether the try failing allocation k of n runs under c->max_tries. */
static int fs_sampled(const fault_case *c, long k, long n) {
  const long m = c->max_tries;
  if (m <= 0 || n <= m)
    return 1;
  const long edge = m / 4 > 0 ? m / 4 : 1, mid = m - 2 * edge;
  if (k <= edge || k > n - edge)
    return 1;
  const long span = n - 2 * edge; /* k - edge in 1..span */
  return mid > 0 && (k - edge) % ((span + mid - 1) / mid) == 0;
}

/* Tallies for the closing lines and fuzz/RESULTS.md. */
static long fs_calls, fs_allocs_failed, fs_threads_failed, fs_absorbed;

static uint64_t fs_hash(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  if (h == 0)
    h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static void fs_prepare(const fault_case *c) {
  if (c->msg && c->msg_size)
    c->msg[0] = '\0';
  if (c->prepare)
    c->prepare(c->st);
}

static void fs_release(const fault_case *c) {
  if (c->release)
    c->release(c->st);
}

/* One unarmed call: must succeed with the reference bits and leak nothing. */
static void fs_clean_call(const fault_case *c, uint64_t ref, const char *when,
                          long n) {
  fs_prepare(c);
  const long live0 = fi_live(NULL);
  const attn_status s = c->call(c->st);
  CHECK(s == ATTN_OK, "%s: call after %s %ld: status %d (%s)", c->name, when, n,
        (int)s, c->msg ? c->msg : "");
  if (s == ATTN_OK) {
    const uint64_t d = c->digest ? c->digest(c->st) : 0;
    CHECK(d == ref,
          "%s: call after %s %ld: results differ from the "
          "reference",
          c->name, when, n);
    fs_release(c);
  }
  const long live1 = fi_live(NULL);
  CHECK(live1 == live0,
        "%s: call after %s %ld: %ld allocations live, %ld "
        "before",
        c->name, when, n, live1, live0);
}

/* The allocation sweep; returns N (-1 when the reference call failed). */
static long fault_allocs(const fault_case *c) {
  fs_calls++;
  fs_prepare(c);
  long live0 = fi_live(NULL);
  long n_alloc = 0, n_thread = 0;
  fi_arm_count();
  attn_status s = c->call(c->st);
  fi_disarm(&n_alloc, &n_thread);
  CHECK(s == ATTN_OK, "%s: reference call: status %d (%s)", c->name, (int)s,
        c->msg ? c->msg : "");
  if (s != ATTN_OK)
    return -1;
  const uint64_t ref = c->digest ? c->digest(c->st) : 0;
  fs_release(c);
  long live1 = fi_live(NULL);
  CHECK(live1 == live0,
        "%s: reference call leaks: %ld allocations live, %ld "
        "before",
        c->name, live1, live0);
  const int want = c->oom_status ? c->oom_status : ATTN_ERR_OUT_OF_MEMORY;
  for (long k = 1; k <= n_alloc; k++) {
    if (!fs_sampled(c, k, n_alloc))
      continue;
    fs_prepare(c);
    const uint64_t st0 = c->state ? c->state(c->st) : 0;
    live0 = fi_live(NULL);
    fi_arm_fail(FI_ALLOC, k, 0);
    s = c->call(c->st);
    const int fired = fi_disarm(NULL, NULL);
    fs_allocs_failed++;
    CHECK(fired, "%s: allocation %ld of %ld was never made", c->name, k,
          n_alloc);
    if (s == ATTN_OK) {
      fs_absorbed++;
      const uint64_t d = c->digest ? c->digest(c->st) : 0;
      CHECK(d == ref,
            "%s: allocation %ld of %ld failed, the call returned "
            "ATTN_OK with other results",
            c->name, k, n_alloc);
      fs_release(c);
    } else {
      CHECK((int)s == want,
            "%s: allocation %ld of %ld failed: status %d, "
            "expected %d (%s)",
            c->name, k, n_alloc, (int)s, want, c->msg ? c->msg : "");
      if (c->msg)
        CHECK(c->msg[0] != '\0',
              "%s: allocation %ld of %ld failed: no "
              "message",
              c->name, k, n_alloc);
      if (c->state)
        CHECK(c->state(c->st) == st0,
              "%s: allocation %ld of %ld failed "
              "and the call changed its objects",
              c->name, k, n_alloc);
    }
    live1 = fi_live(NULL);
    CHECK(live1 == live0,
          "%s: allocation %ld of %ld failed: %ld "
          "allocations live, %ld before",
          c->name, k, n_alloc, live1, live0);
    fs_clean_call(c, ref, "failing allocation", k);
  }
  (void)n_thread;
  return n_alloc;
}

/* The thread sweep: needs c->ctx; makes a fresh context of c->ctx_threads
 * threads per try (its pool then starts its workers in the call). */
static long fault_threads(const fault_case *c) {
  attn_context **ctxp = c->ctx;
  attn_context *saved = *ctxp;
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = c->ctx_threads;
  /* reference, and the number of threads it starts */
  const long live_start = fi_live(NULL);
  attn_context *ctx = NULL;
  attn_status s = attn_context_create(&ctx, &o);
  CHECK(s == ATTN_OK, "%s: context: status %d", c->name, (int)s);
  if (s != ATTN_OK)
    return -1;
  *ctxp = ctx;
  fs_prepare(c);
  long n_alloc = 0, n_thread = 0;
  fi_arm_count();
  s = c->call(c->st);
  fi_disarm(&n_alloc, &n_thread);
  CHECK(s == ATTN_OK, "%s: reference call (fresh context): status %d (%s)",
        c->name, (int)s, c->msg ? c->msg : "");
  const uint64_t ref = s == ATTN_OK && c->digest ? c->digest(c->st) : 0;
  if (s == ATTN_OK)
    fs_release(c);
  attn_context_free(ctx);
  CHECK(n_thread > 0, "%s: no thread started with %d threads", c->name,
        c->ctx_threads);
  for (int rest = 0; rest <= 1; rest++)
    for (long k = 1; k <= n_thread; k++) {
      ctx = NULL;
      s = attn_context_create(&ctx, &o);
      CHECK(s == ATTN_OK, "%s: context: status %d", c->name, (int)s);
      if (s != ATTN_OK)
        break;
      *ctxp = ctx;
      fs_prepare(c);
      fi_arm_fail(FI_THREAD, k, rest);
      s = c->call(c->st);
      const int fired = fi_disarm(NULL, NULL);
      fs_threads_failed++;
      CHECK(fired, "%s: thread %ld of %ld never started", c->name, k, n_thread);
      CHECK(s == ATTN_OK,
            "%s: thread %ld of %ld%s failed to start: status "
            "%d (%s)",
            c->name, k, n_thread, rest ? " and later ones" : "", (int)s,
            c->msg ? c->msg : "");
      if (s == ATTN_OK) {
        const uint64_t d = c->digest ? c->digest(c->st) : 0;
        CHECK(d == ref,
              "%s: thread %ld of %ld%s failed to start: other "
              "results",
              c->name, k, n_thread, rest ? " and later ones" : "");
        fs_release(c);
      }
      /* the pool fills up on the next call */
      fs_clean_call(c, ref, "failing thread", k);
      attn_context_free(ctx);
    }
  *ctxp = saved;
  const long live_end = fi_live(NULL);
  CHECK(live_end == live_start,
        "%s: thread sweep: %ld allocations live, %ld "
        "before",
        c->name, live_end, live_start);
  return n_thread;
}

/* Both sweeps (threads when the case has a context). */
static void fault_run(const fault_case *c) {
  const long a = fault_allocs(c);
  long t = 0;
  if (c->ctx && c->ctx_threads > 1)
    t = fault_threads(c);
  printf("  %-44s %3ld allocations%s", c->name, a,
         c->ctx && c->ctx_threads > 1 ? "" : "\n");
  if (c->ctx && c->ctx_threads > 1)
    printf(", %ld threads\n", t);
}

static void fault_summary(void) {
  printf("faults: %ld calls, %ld allocations failed, %ld thread starts "
         "failed, %ld absorbed (ATTN_OK, same bits)\n",
         fs_calls, fs_allocs_failed, fs_threads_failed, fs_absorbed);
}

#endif
