/*
 * fault_inject.h - fails the n-th heap allocation or thread creation of a
 * test program, and keeps account of the live allocations (issue 15,
 * "Faults"; docs/decisions.md, "Fault injection"). The library is not
 * changed: the program links the STATIC libraries with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,
 *   --wrap=posix_memalign,--wrap=free,--wrap=pthread_create
 * so that every call to those in the library's objects (and the test's)
 * goes through the wrappers below. Allocations made inside the C library
 * itself (fopen's buffer, qsort's scratch) and inside shared libraries
 * (OpenBLAS) are not seen: they are not the library's.
 *
 * Include this header in exactly one file of the program.
 *
 *   fi_arm_count()              count allocations and thread creations
 *   fi_arm_fail(kind, n, rest)  fail the n-th allocation (FI_ALLOC: NULL,
 *                               or ENOMEM from posix_memalign) or thread
 *                               creation (FI_THREAD: EAGAIN), 1-based,
 *                               and with rest every one after it too
 *   fi_disarm(&allocs, &threads) stop; returns whether a failure fired
 *   fi_live(&bytes)             live allocations (made through the
 *                               wrappers, not yet freed) and their bytes
 *
 * Live allocations are kept in a fixed open-addressing table (no heap),
 * under a spin lock: thread-safe, the pool's workers may allocate too.
 */
#ifndef ATTN_TEST_FAULT_INJECT_H
#define ATTN_TEST_FAULT_INJECT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { FI_ALLOC = 0, FI_THREAD = 1 };

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void __real_free(void *p);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
void __wrap_free(void *p);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);

/* ---- arming ------------------------------------------------------------ */
static atomic_int fi_armed;      /* 0 off, 1 counting / failing          */
static atomic_long fi_seen[2];   /* events of each kind since arming     */
static atomic_long fi_target[2]; /* fail event number n (0 = none)       */
static atomic_int fi_rest[2];    /* and every one after it               */
static atomic_int fi_fired_flag; /* a failure was injected               */

/* 1 when this event (of kind) must fail; counts it. */
static int fi_event(int kind) {
  if (!atomic_load_explicit(&fi_armed, memory_order_acquire))
    return 0;
  const long n = atomic_fetch_add(&fi_seen[kind], 1) + 1;
  const long t = atomic_load(&fi_target[kind]);
  if (t > 0 && (n == t || (n > t && atomic_load(&fi_rest[kind])))) {
    atomic_store(&fi_fired_flag, 1);
    return 1;
  }
  return 0;
}

static void fi_arm_fail(int kind, long n, int rest) {
  atomic_store(&fi_seen[0], 0);
  atomic_store(&fi_seen[1], 0);
  atomic_store(&fi_target[0], 0);
  atomic_store(&fi_target[1], 0);
  atomic_store(&fi_rest[0], 0);
  atomic_store(&fi_rest[1], 0);
  atomic_store(&fi_target[kind], n);
  atomic_store(&fi_rest[kind], rest);
  atomic_store(&fi_fired_flag, 0);
  atomic_store_explicit(&fi_armed, 1, memory_order_release);
}

static void fi_arm_count(void) { fi_arm_fail(FI_ALLOC, 0, 0); }

static int fi_disarm(long *allocs, long *threads) {
  atomic_store_explicit(&fi_armed, 0, memory_order_release);
  if (allocs)
    *allocs = atomic_load(&fi_seen[FI_ALLOC]);
  if (threads)
    *threads = atomic_load(&fi_seen[FI_THREAD]);
  return atomic_load(&fi_fired_flag);
}

/* ---- live allocations: open addressing, linear probing ------------------ */
#define FI_SLOTS (1u << 17)
static struct fi_slot {
  void *p;
  size_t n;
} fi_table[FI_SLOTS];
static atomic_flag fi_lock = ATOMIC_FLAG_INIT;
static long fi_live_count;
static size_t fi_live_bytes;

static void fi_acquire(void) {
  while (atomic_flag_test_and_set_explicit(&fi_lock, memory_order_acquire))
    ;
}
static void fi_release(void) {
  atomic_flag_clear_explicit(&fi_lock, memory_order_release);
}

static size_t fi_hash(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)(x & (FI_SLOTS - 1));
}

static void fi_add(void *p, size_t n) {
  if (!p)
    return;
  fi_acquire();
  size_t i = fi_hash(p);
  for (size_t k = 0; fi_table[i].p && fi_table[i].p != p; k++) {
    if (k == FI_SLOTS) {
      fi_release();
      fprintf(stderr, "fault_inject.h: the table of live allocations is "
                      "full\n");
      abort();
    }
    i = (i + 1) & (FI_SLOTS - 1);
  }
  if (fi_table[i].p == p) { /* freed behind our back (inside libc) */
    fi_live_bytes -= fi_table[i].n;
    fi_live_count--;
  }
  fi_table[i].p = p;
  fi_table[i].n = n;
  fi_live_count++;
  fi_live_bytes += n;
  fi_release();
}

/* Removes p (backward-shift deletion); unknown pointers are ignored. */
static void fi_remove(void *p) {
  if (!p)
    return;
  fi_acquire();
  size_t i = fi_hash(p);
  while (fi_table[i].p && fi_table[i].p != p)
    i = (i + 1) & (FI_SLOTS - 1);
  if (fi_table[i].p) {
    fi_live_count--;
    fi_live_bytes -= fi_table[i].n;
    fi_table[i].p = NULL;
    size_t j = i;
    for (;;) {
      j = (j + 1) & (FI_SLOTS - 1);
      if (!fi_table[j].p)
        break;
      const size_t h = fi_hash(fi_table[j].p);
      /* move j into the hole i unless its home lies cyclically in (i, j] */
      const int stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (!stays) {
        fi_table[i] = fi_table[j];
        fi_table[j].p = NULL;
        i = j;
      }
    }
  }
  fi_release();
}

static long fi_live(size_t *bytes) {
  fi_acquire();
  const long n = fi_live_count;
  if (bytes)
    *bytes = fi_live_bytes;
  fi_release();
  return n;
}

/* ---- the wrappers -------------------------------------------------------- */
void *__wrap_malloc(size_t n) {
  if (fi_event(FI_ALLOC))
    return errno = ENOMEM, NULL;
  void *p = __real_malloc(n);
  fi_add(p, n);
  return p;
}

void *__wrap_calloc(size_t n, size_t m) {
  if (fi_event(FI_ALLOC))
    return errno = ENOMEM, NULL;
  void *p = __real_calloc(n, m);
  fi_add(p, n * m);
  return p;
}

void *__wrap_realloc(void *p, size_t n) {
  if (fi_event(FI_ALLOC))
    return errno = ENOMEM, NULL; /* p stays valid, as realloc promises */
  void *q = __real_realloc(p, n);
  if (q || n == 0)
    fi_remove(p);
  fi_add(q, n);
  return q;
}

void *__wrap_aligned_alloc(size_t a, size_t n) {
  if (fi_event(FI_ALLOC))
    return errno = ENOMEM, NULL;
  void *p = __real_aligned_alloc(a, n);
  fi_add(p, n);
  return p;
}

int __wrap_posix_memalign(void **p, size_t a, size_t n) {
  if (fi_event(FI_ALLOC))
    return ENOMEM;
  const int r = __real_posix_memalign(p, a, n);
  if (r == 0)
    fi_add(*p, n);
  return r;
}

void __wrap_free(void *p) {
  fi_remove(p);
  __real_free(p);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg) {
  if (fi_event(FI_THREAD))
    return EAGAIN;
  return __real_pthread_create(t, a, fn, arg);
}

#endif
