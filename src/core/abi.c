/* The ABI of the public structs (attn.h, "ABI"): every entry point that
 * takes attn_params or attn_context_options receives the size of the
 * struct as the caller's header declared it, copies that many bytes over a
 * defaults-initialised full struct, and works on the copy. The unsuffixed
 * exported names are the 0.1 entry points (0.1's layout is the prefix of
 * today's). */
#include "core/internal.h"

#include <string.h>

/* Every attn_params size a released attn.h declared, oldest first. */
static const size_t params_sizes[] = {
    ATTN_PARAMS_SIZE_0_1, ATTN_PARAMS_SIZE_0_2, ATTN_PARAMS_SIZE_0_3,
    ATTN_PARAMS_SIZE_0_4, sizeof(attn_params)};

static void params_defaults(attn_params *p) {
  memset(p, 0, sizeof *p);
  p->causal = ATTN_CAUSAL_NONE;
  p->window_left = -1;
  p->window_right = -1;
  p->isa = ATTN_ISA_AUTO;
  p->bias.dtype = ATTN_DTYPE_F32;
  p->mask.dtype = ATTN_DTYPE_BOOL;
  p->dbias.dtype = ATTN_DTYPE_F32;
  p->prefix_len = -1;
  p->rel_buckets = 32;
  p->rel_max_distance = 128;
  p->block_mask.dtype = ATTN_DTYPE_BOOL;
}

static int params_size_known(size_t size) {
  for (size_t i = 0; i < sizeof params_sizes / sizeof params_sizes[0]; i++)
    if (params_sizes[i] == size)
      return 1;
  return 0;
}

void attn_params_init_sized(attn_params *p, size_t size) {
  if (!p || !params_size_known(size))
    return; /* nothing is written into memory of unknown size */
  attn_params full;
  params_defaults(&full);
  memcpy(p, &full, size);
}

void attn_params_init(attn_params *p) {
  attn_params_init_sized(p, ATTN_PARAMS_SIZE_0_1);
}

attn_status attn_params_import(const attn_params *p, size_t size,
                               attn_params *out) {
  if (!p)
    return ATTN_ERR_NULL_POINTER;
  if (!params_size_known(size)) {
    /* Every known layout starts with 0.1's, so a larger struct still has
     * the message buffer where we expect it. */
    if (size > ATTN_PARAMS_SIZE_0_1)
      attn_fail(p, ATTN_ERR_ABI,
                "attn_params is %zu bytes, but libattn %s knows %zu (0.1), "
                "%zu (0.2), %zu (0.3), %zu (0.4) and %zu (this release): "
                "built against a newer attn.h?",
                size, attn_version_string(), params_sizes[0], params_sizes[1],
                params_sizes[2], params_sizes[3], sizeof(attn_params));
    return ATTN_ERR_ABI;
  }
  params_defaults(out);
  memcpy(out, p, size);
  return ATTN_OK;
}
