/*
 * npy_slice.c - cuts a .npy array along one axis, for the command-line
 * test of `attn merge` (tests/cli/test_merge.sh), which runs `attn run` on
 * ranges of the keys. Uses the library's reader and writer (attn/io.h).
 *
 *   npy_slice IN OUT AXIS START STOP     OUT = IN[..., START:STOP, ...]
 *
 * Any dtype attn/io.h reads; 0 <= START < STOP <= the axis's size. Exit
 * status 0 on success, 1 on a file error, 2 on bad usage.
 */
#include "attn/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  fprintf(stderr, "usage: npy_slice IN OUT AXIS START STOP\n");
  return 2;
}

static int number(const char *s, long long *v) {
  char *end;
  *v = strtoll(s, &end, 10);
  return end != s && *end == '\0';
}

int main(int argc, char **argv) {
  long long axis, start, stop;
  if (argc != 6 || !number(argv[3], &axis) || !number(argv[4], &start) ||
      !number(argv[5], &stop))
    return usage();
  attn_npy a;
  char err[512];
  if (attn_npy_read(argv[1], &a, err, sizeof err) != ATTN_OK) {
    fprintf(stderr, "npy_slice: %s\n", err);
    return 1;
  }
  if (axis < 0 || axis >= a.ndim || start < 0 || stop <= start ||
      stop > a.shape[axis]) {
    attn_npy_free(&a);
    return usage();
  }
  /* outer blocks of `inner` bytes per index of the axis */
  size_t outer = 1, inner = a.elem_size;
  for (long long i = 0; i < axis; i++)
    outer *= (size_t)a.shape[i];
  for (int i = (int)axis + 1; i < a.ndim; i++)
    inner *= (size_t)a.shape[i];
  const size_t n = (size_t)a.shape[axis], k = (size_t)(stop - start);
  char *out = malloc(outer * k * inner + 1);
  if (!out) {
    attn_npy_free(&a);
    fprintf(stderr, "npy_slice: out of memory\n");
    return 1;
  }
  for (size_t o = 0; o < outer; o++)
    memcpy(out + o * k * inner,
           (const char *)a.data + (o * n + (size_t)start) * inner, k * inner);
  int64_t shape[ATTN_NPY_MAX_DIMS];
  memcpy(shape, a.shape, sizeof shape);
  shape[axis] = (int64_t)k;
  const attn_status st =
      attn_npy_write(argv[2], a.dtype, a.ndim, shape, out, err, sizeof err);
  free(out);
  attn_npy_free(&a);
  if (st != ATTN_OK) {
    fprintf(stderr, "npy_slice: %s\n", err);
    return 1;
  }
  return 0;
}
