/*
 * npy_fuzz.c - libFuzzer target for the .npy reader (tools/npy.c).
 *
 * Any input must either parse into a consistent array or fail with a
 * non-empty, one-line message; never crash, never read out of bounds.
 */
#include "npy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  npy_array a;
  char err[256];
  memset(err, 'x', sizeof err);
  err[sizeof err - 1] = '\0';
  if (npy_read_mem(data, size, &a, err, sizeof err) == 0) {
    /* the array must be self-consistent and its data fully readable */
    if (a.ndim < 0 || a.ndim > NPY_MAX_DIMS || a.data == NULL ||
        a.elem_size != npy_dtype_size(a.dtype))
      abort();
    int64_t count = 1;
    for (int i = 0; i < a.ndim; i++)
      count *= a.shape[i];
    if (count != a.count || (uint64_t)count * a.elem_size > size)
      abort();
    const unsigned char *p = a.data;
    unsigned acc = 0;
    for (size_t i = 0; i < (size_t)a.count * a.elem_size; i++)
      acc += p[i];
    volatile unsigned sink = acc;
    (void)sink;
    npy_free(&a);
    if (a.data != NULL)
      abort();
  } else {
    size_t n = strlen(err);
    if (n == 0 || strchr(err, '\n') != NULL || a.data != NULL)
      abort();
  }
  return 0;
}
