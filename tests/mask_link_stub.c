/* Compiled masks for the tests (problem.h) while the library has none:
 * nothing is compiled, and tp_generate never asks for a compiled mask.
 * CMake's ATTN_TEST_MASK_COMPILE picks this or mask_link.c. */
#include "problem.h"

const int tp_mask_linked = 0;

attn_status tp_mask_compile(const attn_params *p, attn_mask **out) {
  (void)p;
  if (out)
    *out = NULL;
  return ATTN_ERR_INVALID_ARGUMENT;
}

void tp_mask_free(attn_mask *m) { (void)m; }

attn_status tp_mask_tile_counts(const attn_mask *m, int64_t *full,
                                int64_t *partial, int64_t *empty) {
  (void)m, (void)full, (void)partial, (void)empty;
  return ATTN_ERR_INVALID_ARGUMENT;
}
