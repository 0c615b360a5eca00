/*
 * safetensors_fuzz.c - libFuzzer target for the safetensors reader
 * (src/io/safetensors.c) and its JSON parser (src/io/json.c).
 *
 * Any input must either parse into a consistent file or fail with a
 * non-empty, one-line message and a zeroed st_file; never crash, never
 * read out of bounds. What parses: every tensor lies inside the input, the
 * tensors tile the data without overlap, st_find finds each by its name,
 * and F32/F16/BF16 tensors convert (every byte is read).
 */
#include "json.h"
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_file(const st_file *f, const uint8_t *data, size_t size) {
  uint64_t total = 0;
  for (int64_t i = 0; i < f->n; i++) {
    const st_tensor *t = &f->tensors[i];
    if (t->data < data || t->nbytes > size ||
        (size_t)(t->data - data) > size - t->nbytes)
      abort();
    if (t->nbytes != (uint64_t)t->count * st_dtype_size(t->dtype) ||
        t->ndim < 0 || t->ndim > ST_MAX_DIMS)
      abort();
    if (st_find(f, t->name) != t)
      abort();
    total += t->nbytes;
    if ((t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) &&
        t->count <= (1 << 16)) {
      float *buf = malloc((size_t)(t->count ? t->count : 1) * sizeof *buf);
      char err[128];
      if (buf && st_read_f32(t, t->ndim, t->shape, buf, t->count, err,
                             sizeof err) != 0)
        abort();
      free(buf);
    }
  }
  if (total > size)
    abort(); /* they tile the data: no overlap */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  st_file f;
  char err[256];
  err[0] = 0;
  if (st_parse(data, size, &f, err, sizeof err) == 0) {
    check_file(&f, data, size);
    st_close(&f);
  } else if (!err[0] || strchr(err, '\n') || f.n != 0 || f.tensors) {
    abort();
  }
  /* the JSON parser alone on the same bytes */
  json_doc d;
  if (json_parse((const char *)data, size, &d, err, sizeof err) == 0) {
    if (d.n < 1 || d.nodes[0].next != d.n)
      abort();
    for (int64_t i = 0; i < d.n; i++) {
      const json_node *nd = &d.nodes[i];
      if (nd->start > size || nd->len > size - nd->start || nd->next <= i ||
          nd->next > d.n)
        abort();
      if (nd->type == JSON_STRING) {
        int64_t k = json_string_copy(&d, i, NULL, 0);
        if (k >= 0) {
          char *s = malloc((size_t)k + 1);
          if (s && json_string_copy(&d, i, s, (size_t)k + 1) != k)
            abort();
          free(s);
        }
      } else if (nd->type == JSON_NUMBER) {
        int64_t v;
        double x;
        (void)json_int64(&d, i, &v);
        (void)json_double(&d, i, &x);
      } else if (nd->type == JSON_OBJECT) {
        (void)json_object_get(&d, i, "dtype");
      }
    }
    json_free(&d);
  } else if (!err[0] || d.nodes) {
    abort();
  }
  return 0;
}
