/*
 * bpe_fuzz.c - libFuzzer target for the byte-level BPE (src/model/bpe.c).
 *
 * Input: byte 0 picks the pre-tokenizer and whether special tokens are
 * recognised; byte 1 = k, then k pairs of bytes each add a merge of two
 * existing tokens (so the merge table is the input's); the rest is the
 * text. The vocabulary has every byte, so decode(encode(text)) must give
 * the text back exactly, every id must be in the vocabulary, and encoding
 * twice must give the same ids.
 */
#include "bpe.h"
#include "unicode.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MERGES 64
#define NT (256 + MAX_MERGES + 3)

/* GPT-2's byte alphabet: printable bytes stand for themselves, the others
 * take 256, 257, ... in byte order (n counts those before c). */
static int printable(int c) {
  return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) ||
         (c >= 174 && c <= 255);
}

typedef struct vocab {
  char spell[NT][160]; /* spellings (byte alphabet), NUL-terminated */
  gguf_str tok[NT];
  int32_t type[NT];
  char mtext[MAX_MERGES][330];
  gguf_str merge[MAX_MERGES];
  int nt, nm;
} vocab;

static void add(vocab *v, const char *s, size_t n, int32_t type) {
  memcpy(v->spell[v->nt], s, n); /* n < sizeof spell[0] */
  v->spell[v->nt][n] = 0;
  v->tok[v->nt] = (gguf_str){v->spell[v->nt], n};
  v->type[v->nt++] = type;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  vocab *v = calloc(1, sizeof *v);
  if (!v)
    return 0;
  for (int c = 0, n = 0; c < 256; c++) {
    char s[4];
    add(v, s, utf8_encode(printable(c) ? (uint32_t)c : 256u + (uint32_t)n++, s),
        1);
  }
  size_t k = data[1] % (MAX_MERGES + 1), pos = 2;
  for (size_t i = 0; i < k && pos + 1 < size; i++, pos += 2) {
    int a = data[pos] % v->nt, b = data[pos + 1] % v->nt;
    size_t la = v->tok[a].len, lb = v->tok[b].len;
    if (la + lb >= sizeof v->spell[0])
      continue;
    char *m = v->mtext[v->nm];
    memcpy(m, v->spell[a], la);
    m[la] = ' ';
    memcpy(m + la + 1, v->spell[b], lb);
    v->merge[v->nm] = (gguf_str){m, la + 1 + lb};
    v->nm++;
    char joined[330];
    memcpy(joined, v->spell[a], la);
    memcpy(joined + la, v->spell[b], lb);
    add(v, joined, la + lb, 1);
  }
  add(v, "<|s|>", 5, 3);
  add(v, "<|s|>>", 6, 3);
  add(v, "<u>", 3, 4);
  bpe *b;
  char err[256];
  bpe_pre pre = (data[0] & 1) ? BPE_PRE_SMOLLM : BPE_PRE_GPT2;
  int specials = (data[0] >> 1) & 1;
  if (bpe_build(v->tok, v->nt, v->merge, v->nm, v->type, pre, &b, err,
                sizeof err) != 0)
    abort(); /* every merge's parts and result are tokens */
  const char *text = (const char *)data + pos;
  size_t len = size - pos;
  int32_t *ids, *ids2;
  int64_t n, n2;
  char *back;
  size_t blen;
  if (bpe_encode(b, text, len, specials, &ids, &n, err, sizeof err) ||
      bpe_encode(b, text, len, specials, &ids2, &n2, err, sizeof err))
    abort();
  if (n != n2 || (n && memcmp(ids, ids2, (size_t)n * sizeof *ids) != 0))
    abort();
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= v->nt)
      abort();
  if (bpe_decode(b, ids, n, &back, &blen, err, sizeof err) || blen != len ||
      memcmp(back, text, len) != 0)
    abort();
  free(back);
  free(ids);
  free(ids2);
  bpe_free(b);
  free(v);
  return 0;
}
