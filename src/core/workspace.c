/* The memory of one call: the caller's workspace when given (then nothing
 * is allocated), else one allocation. The usable base is 64-byte aligned;
 * the sizes the layouts compute include that much slack.
 *
 * A large workspace (a long backward's dQ partials: 169 MB at seq 8192, 8
 * heads) is 2 MiB-aligned with transparent huge pages advised: the kernel
 * then faults it in 2 MiB at a time. With 4 KiB pages the first touches
 * cost 150 ms of page faults per call at that size (measured on Zen 3),
 * as much as the whole of a 1%-dense block-sparse backward. A hint only:
 * without huge pages it is an ordinary allocation.
 *
 * A context keeps one spare: a workspace of 8 to 64 MiB is released into
 * it instead of freed, and the next call under that context that needs at
 * most as much takes it back. Without it every such call mapped and
 * unmapped its memory and faulted it in again: a backward at 8 heads, seq
 * 512, head_dim 64 (11 MB of dQ partials) spent 9% of its time in the
 * kernel zeroing pages (Zen 3, perf). Smaller workspaces come from malloc,
 * which reuses them itself; larger ones are rare and long calls. At most
 * one block per context is kept (freed with the context; the default
 * context's lives as long as the process). docs/decisions.md, "Issue 14:
 * a spare workspace per context". */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE, posix_memalign */
#include "core/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define HUGE_BYTES ((size_t)2 << 20)     /* a transparent huge page      */
#define HUGE_MIN_BYTES ((size_t)8 << 20) /* smaller: malloc is as good */

/* Every block the library allocates starts with its capacity (the need it
 * was made for), one alignment unit long; the workspace follows. */
#define HEAD_BYTES ((size_t)ATTN_WORKSPACE_ALIGN)

static size_t block_cap(const void *block) {
  size_t cap;
  memcpy(&cap, block, sizeof cap);
  return cap;
}

/* Whether a workspace of need bytes goes through the context's spare. */
static int spare_size(size_t need) {
  return need >= ATTN_SPARE_MIN_BYTES && need <= ATTN_SPARE_MAX_BYTES;
}

static void *workspace_alloc(size_t need) {
  if (need > SIZE_MAX - HEAD_BYTES)
    return NULL;
  const size_t total = need + HEAD_BYTES;
  void *p = NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (total >= HUGE_MIN_BYTES) {
    const size_t n = (total + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    if (n < total || posix_memalign(&p, HUGE_BYTES, n) != 0)
      return NULL;
    (void)madvise(p, n, MADV_HUGEPAGE); /* a hint: 4 KiB pages if not */
  }
#endif
  if (!p)
    p = malloc(total);
  if (p)
    memcpy(p, &need, sizeof need);
  return p;
}

attn_status attn_workspace_acquire(attn_context *ctx, const attn_params *p,
                                   size_t need, void **owned, char **base) {
  *owned = NULL;
  char *b;
  if (p->workspace) {
    if (p->workspace_size < need)
      return attn_fail(p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                       "workspace of %zu bytes, %zu needed", p->workspace_size,
                       need);
    b = (char *)p->workspace;
  } else {
    void *blk = NULL;
    if (ctx && spare_size(need)) {
      blk = attn_context_spare_swap(ctx, NULL);
      if (blk && block_cap(blk) < need) {
        free(blk); /* too small: a larger one replaces it at release */
        blk = NULL;
      }
    }
    if (!blk)
      blk = workspace_alloc(need);
    if (!blk)
      return attn_fail(p, ATTN_ERR_OUT_OF_MEMORY,
                       "could not allocate %zu bytes of workspace", need);
    *owned = blk;
    b = (char *)blk + HEAD_BYTES;
  }
  const uintptr_t a = ((uintptr_t)b + ATTN_WORKSPACE_ALIGN - 1) /
                      ATTN_WORKSPACE_ALIGN * ATTN_WORKSPACE_ALIGN;
  *base = b + (a - (uintptr_t)b);
  return ATTN_OK;
}

void attn_workspace_release(attn_context *ctx, void *owned) {
  if (!owned)
    return;
  if (ctx && spare_size(block_cap(owned)))
    owned = attn_context_spare_swap(ctx, owned); /* kept; the old one goes */
  free(owned);
}
