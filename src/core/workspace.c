/* The memory of one call: the caller's workspace when given (then nothing
 * is allocated), else one allocation. The usable base is 64-byte aligned;
 * the sizes the layouts compute include that much slack.
 *
 * A large workspace (a long backward's dQ partials: 169 MB at seq 8192, 8
 * heads) is 2 MiB-aligned with transparent huge pages advised: the kernel
 * then faults it in 2 MiB at a time. With 4 KiB pages the first touches
 * cost 150 ms of page faults per call at that size (measured on Zen 3),
 * as much as the whole of a 1%-dense block-sparse backward. A hint only:
 * without huge pages it is an ordinary allocation. */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE, posix_memalign */
#include "core/internal.h"

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define HUGE_BYTES ((size_t)2 << 20)     /* a transparent huge page      */
#define HUGE_MIN_BYTES ((size_t)8 << 20) /* smaller: malloc is as good */

static void *workspace_alloc(size_t need) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (need >= HUGE_MIN_BYTES) {
    void *p = NULL;
    const size_t n = (need + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    if (n < need || posix_memalign(&p, HUGE_BYTES, n) != 0)
      return NULL;
    (void)madvise(p, n, MADV_HUGEPAGE); /* a hint: 4 KiB pages if not */
    return p;
  }
#endif
  return malloc(need);
}

attn_status attn_workspace_acquire(const attn_params *p, size_t need,
                                   void **owned, char **base) {
  *owned = NULL;
  char *b;
  if (p->workspace) {
    if (p->workspace_size < need)
      return attn_fail(p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                       "workspace of %zu bytes, %zu needed", p->workspace_size,
                       need);
    b = (char *)p->workspace;
  } else {
    *owned = workspace_alloc(need);
    if (!*owned)
      return attn_fail(p, ATTN_ERR_OUT_OF_MEMORY,
                       "could not allocate %zu bytes of workspace", need);
    b = (char *)*owned;
  }
  const uintptr_t a = ((uintptr_t)b + ATTN_WORKSPACE_ALIGN - 1) /
                      ATTN_WORKSPACE_ALIGN * ATTN_WORKSPACE_ALIGN;
  *base = b + (a - (uintptr_t)b);
  return ATTN_OK;
}
