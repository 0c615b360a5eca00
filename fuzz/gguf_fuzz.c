/*
 * gguf_fuzz.c - libFuzzer target for the GGUF reader (src/io/gguf.c) and
 * the BPE built from a GGUF's tokenizer metadata (src/model/bpe.c).
 *
 * Any input must either open, with every tensor inside the input and every
 * metadata getter answering (a value or a one-line message), or fail with a
 * non-empty one-line message and no handle; never crash, never read out of
 * bounds. What opens is dequantised tensor by tensor; when its tokenizer
 * metadata builds a BPE, a text encodes and decodes back.
 */
#include "bpe.h"
#include "gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const char *err) {
  if (err[0] == '\0' || strchr(err, '\n') != NULL)
    abort();
}

static void getters(const gguf_file *f) {
  char err[256], key[128];
  for (int64_t i = 0; i < gguf_n_kv(f); i++) {
    const gguf_kv *kv = gguf_kv_at(f, i);
    size_t n = kv->key.len < sizeof key - 1 ? kv->key.len : sizeof key - 1;
    memcpy(key, kv->key.s, n);
    key[n] = 0;
    uint32_t u;
    float x;
    int b;
    gguf_str s;
    gguf_str *sa;
    int32_t *ia;
    uint64_t cnt;
    if (gguf_get_u32(f, key, &u, err, sizeof err))
      one_line(err);
    if (gguf_get_f32(f, key, &x, err, sizeof err))
      one_line(err);
    if (gguf_get_bool(f, key, &b, err, sizeof err))
      one_line(err);
    if (gguf_get_string(f, key, &s, err, sizeof err))
      one_line(err);
    else if (s.s < (const char *)kv->data || s.len > kv->size)
      abort();
    if (gguf_get_string_array(f, key, &sa, &cnt, err, sizeof err) == 0) {
      if (cnt != kv->arr_n)
        abort();
      free(sa);
    } else {
      one_line(err);
    }
    if (gguf_get_i32_array(f, key, &ia, &cnt, err, sizeof err) == 0)
      free(ia);
    else
      one_line(err);
  }
}

static void tensors(const gguf_file *f, const uint8_t *data, size_t size) {
  char err[256];
  for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
    const gguf_tensor *t = gguf_tensor_at(f, i);
    if (t->data < data || t->n_bytes > size ||
        (size_t)(t->data - data) > size - t->n_bytes)
      abort();
    if (t->n_elements > (1 << 22))
      continue;
    float *x = malloc((size_t)t->n_elements * sizeof(float) + 1);
    if (!x)
      continue;
    if (gguf_tensor_f32(t, x, t->n_elements, err, sizeof err))
      abort();
    free(x);
  }
}

static void tokenizer(const gguf_file *f) {
  char err[256];
  bpe *b;
  if (bpe_from_gguf(f, &b, err, sizeof err)) {
    one_line(err);
    return;
  }
  static const char text[] = "Hello  world 123 <|im_start|>x\n\n";
  int32_t *ids;
  int64_t n;
  char *back;
  size_t len;
  if (bpe_encode(b, text, sizeof text - 1, 1, &ids, &n, err, sizeof err) ||
      bpe_decode(b, ids, n, &back, &len, err, sizeof err))
    abort();
  free(back);
  free(ids);
  bpe_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  gguf_file *f = (gguf_file *)1;
  memset(err, 0, sizeof err);
  if (gguf_open_memory(data, size, &f, err, sizeof err) != 0) {
    if (f != NULL)
      abort();
    one_line(err);
    return 0;
  }
  getters(f);
  tensors(f, data, size);
  tokenizer(f);
  gguf_close(f);
  return 0;
}
