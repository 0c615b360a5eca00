/*
 * decoder_tool.c - what the Python parity tests (test_decoder.py) need
 * from the decoder's C parts, without the command line:
 *
 *   decoder_tool tok GGUF gpt2|smollm TEXTS   texts: u32 count, then per
 *       text u32 length + bytes; prints each text's ids on one line
 *   decoder_tool tensors GGUF OUTDIR [NAME...] every tensor (or those
 *       named) dequantised to OUTDIR/<index>.npy (float32, flat), their
 *       names and types in OUTDIR/names.txt
 */
#include "attn/io.h"
#include "bpe.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tok(const char *gguf, const char *mode, const char *texts) {
  char err[512];
  gguf_file *f;
  bpe *b;
  if (gguf_open(gguf, &f, err, sizeof err) ||
      bpe_from_gguf(f, &b, err, sizeof err)) {
    fprintf(stderr, "decoder_tool: %s\n", err);
    return 1;
  }
  bpe_set_pre(b, strcmp(mode, "gpt2") == 0 ? BPE_PRE_GPT2 : BPE_PRE_SMOLLM);
  FILE *in = fopen(texts, "rb");
  uint32_t n;
  if (!in || fread(&n, 4, 1, in) != 1) {
    fprintf(stderr, "decoder_tool: cannot read %s\n", texts);
    return 1;
  }
  for (uint32_t i = 0; i < n; i++) {
    uint32_t len;
    if (fread(&len, 4, 1, in) != 1)
      return 1;
    char *s = malloc(len + 1);
    if (!s || fread(s, 1, len, in) != len)
      return 1;
    int32_t *ids;
    int64_t k;
    if (bpe_encode(b, s, len, 1, &ids, &k, err, sizeof err)) {
      fprintf(stderr, "decoder_tool: %s\n", err);
      return 1;
    }
    for (int64_t j = 0; j < k; j++)
      printf(j ? " %d" : "%d", ids[j]);
    printf("\n");
    free(ids);
    free(s);
  }
  fclose(in);
  bpe_free(b);
  gguf_close(f);
  return 0;
}

static int tensors(const char *gguf, const char *dir, int nn, char **names_in) {
  char err[512], path[4096];
  gguf_file *f;
  if (gguf_open(gguf, &f, err, sizeof err)) {
    fprintf(stderr, "decoder_tool: %s\n", err);
    return 1;
  }
  snprintf(path, sizeof path, "%s/names.txt", dir);
  FILE *names = fopen(path, "w");
  if (!names)
    return 1;
  for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
    const gguf_tensor *t = gguf_tensor_at(f, i);
    int want = nn == 0;
    for (int k = 0; k < nn; k++)
      want |= strlen(names_in[k]) == t->name.len &&
              memcmp(names_in[k], t->name.s, t->name.len) == 0;
    if (!want)
      continue;
    float *x = malloc((size_t)t->n_elements * sizeof(float));
    if (!x || gguf_tensor_f32(t, x, t->n_elements, err, sizeof err)) {
      fprintf(stderr, "decoder_tool: %s\n", err);
      return 1;
    }
    snprintf(path, sizeof path, "%s/%lld.npy", dir, (long long)i);
    int64_t shape[1] = {t->n_elements};
    if (attn_npy_write(path, ATTN_NPY_F32, 1, shape, x, err, sizeof err)) {
      fprintf(stderr, "decoder_tool: %s\n", err);
      return 1;
    }
    fprintf(names, "%lld %.*s %s\n", (long long)i, (int)t->name.len, t->name.s,
            gguf_dtype_name(t->dtype));
    free(x);
  }
  fclose(names);
  gguf_close(f);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "tok") == 0)
    return tok(argv[2], argv[3], argv[4]);
  if (argc >= 4 && strcmp(argv[1], "tensors") == 0)
    return tensors(argv[2], argv[3], argc - 4, argv + 4);
  fprintf(stderr, "usage: decoder_tool tok GGUF gpt2|smollm TEXTS | "
                  "tensors GGUF OUTDIR\n");
  return 2;
}
