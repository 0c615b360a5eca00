/* Compiled masks for the tests (problem.h): the library's own functions.
 * Linked instead of mask_link_stub.c when ATTN_TEST_MASK_COMPILE is on. */
#include "problem.h"

const int tp_mask_linked = 1;

attn_status tp_mask_compile(const attn_params *p, attn_mask **out) {
  return attn_mask_compile(p, out);
}

void tp_mask_free(attn_mask *m) { attn_mask_free(m); }

attn_status tp_mask_tile_counts(const attn_mask *m, int64_t *full,
                                int64_t *partial, int64_t *empty) {
  return attn_mask_tile_counts(m, full, partial, empty);
}
