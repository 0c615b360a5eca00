/* The memory of one call: the caller's workspace when given (then nothing
 * is allocated), else one malloc. The usable base is 64-byte aligned; the
 * sizes the layouts compute include that much slack. */
#include "core/internal.h"

#include <stdlib.h>

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
    *owned = malloc(need);
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
