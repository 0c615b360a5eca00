/*
 * npy_fuzz.c - libFuzzer target for the library's .npy reader,
 * attn_npy_parse (include/attn/io.h).
 *
 * Any input must either parse into a consistent array or fail with a
 * non-empty, one-line message and a negative status, leaving the output
 * zeroed; never crash, never read out of bounds. What parses must survive
 * a round trip: attn_npy_encode of it parses back to the same dtype, shape
 * and bytes.
 */
#include "attn/io.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_consistent(const attn_npy *a, size_t size) {
  if (a->ndim < 0 || a->ndim > ATTN_NPY_MAX_DIMS || a->data == NULL ||
      a->elem_size == 0 || a->elem_size != attn_npy_dtype_size(a->dtype))
    abort();
  int64_t count = 1;
  for (int i = 0; i < ATTN_NPY_MAX_DIMS; i++) {
    if (a->shape[i] < 0 || (i >= a->ndim && a->shape[i] != 1))
      abort();
    if (i < a->ndim)
      count *= a->shape[i];
  }
  if (count != a->count || a->nbytes != (size_t)count * a->elem_size ||
      a->nbytes > size)
    abort();
  const unsigned char *p = a->data;
  unsigned acc = 0;
  for (size_t i = 0; i < a->nbytes; i++)
    acc += p[i];
  volatile unsigned sink = acc;
  (void)sink;
}

/* attn_npy_encode(a) parses back to a. */
static void check_round_trip(const attn_npy *a) {
  size_t len = 0;
  char err[256];
  if (attn_npy_encode(a->dtype, a->ndim, a->shape, a->data, NULL, 0, &len, err,
                      sizeof err) != ATTN_OK)
    abort();
  unsigned char *buf = malloc(len);
  if (buf == NULL)
    return;
  size_t len2 = 0;
  attn_npy b;
  if (attn_npy_encode(a->dtype, a->ndim, a->shape, a->data, buf, len, &len2,
                      err, sizeof err) != ATTN_OK ||
      len2 != len || attn_npy_parse(buf, len, &b, err, sizeof err) != ATTN_OK)
    abort();
  if (b.dtype != a->dtype || b.ndim != a->ndim ||
      memcmp(b.shape, a->shape, sizeof b.shape) != 0 || b.nbytes != a->nbytes ||
      (a->nbytes && memcmp(b.data, a->data, a->nbytes) != 0))
    abort();
  attn_npy_free(&b);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  attn_npy a;
  char err[256];
  memset(err, 'x', sizeof err);
  err[sizeof err - 1] = '\0';
  attn_status st = attn_npy_parse(data, size, &a, err, sizeof err);
  if (st == ATTN_OK) {
    check_consistent(&a, size);
    check_round_trip(&a);
    attn_npy_free(&a);
    if (a.data != NULL)
      abort();
  } else {
    size_t n = strlen(err);
    if (st > 0 || n == 0 || strchr(err, '\n') != NULL || a.data != NULL ||
        a.ndim != 0)
      abort();
  }
  return 0;
}
