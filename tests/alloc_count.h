/*
 * alloc_count.h - counts heap allocations for the tests that promise none
 * (test_noalloc, test_layer): the program is linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,
 *   --wrap=posix_memalign
 * and this header defines the wrappers. While `counting` is set, every call
 * adds one to `n_allocs`. Include it in exactly one file of the program.
 */
#ifndef ATTN_TEST_ALLOC_COUNT_H
#define ATTN_TEST_ALLOC_COUNT_H

#include <stdatomic.h>
#include <stddef.h>

static atomic_int counting;
static atomic_long n_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);

void *__wrap_malloc(size_t n) {
  if (counting)
    atomic_fetch_add(&n_allocs, 1);
  return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m) {
  if (counting)
    atomic_fetch_add(&n_allocs, 1);
  return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n) {
  if (counting)
    atomic_fetch_add(&n_allocs, 1);
  return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) {
  if (counting)
    atomic_fetch_add(&n_allocs, 1);
  return __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
  if (counting)
    atomic_fetch_add(&n_allocs, 1);
  return __real_posix_memalign(p, a, n);
}

#endif
