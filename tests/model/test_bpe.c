/*
 * test_bpe.c - the byte-level BPE (src/model/bpe.c) on a small vocabulary
 * built here: merges by rank with leftmost ties, the pre-tokenizer's
 * pieces (merges never cross them), SmolLM2's digit split, special tokens
 * (longest first, off on request), dropped bytes, bad vocabularies, and
 * the decode(encode(x)) == x round trip on random bytes. Token-for-token
 * parity with Hugging Face on the real vocabulary is test_decoder_parity.py.
 */
#include "bpe.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
    } else {                                                                   \
      failed++;                                                                \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                              \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* GPT-2's byte -> code point */
static uint32_t b2u(int c) {
  if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))
    return (uint32_t)c;
  int n = 0;
  for (int k = 0; k < c; k++)
    if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) ||
          (k >= 174 && k <= 255)))
      n++;
  return 256u + (uint32_t)n;
}

/* spelling of raw text (in the byte alphabet), static storage */
static char spell_buf[1024][64];
static int spell_n;
static gguf_str spell(const char *raw) {
  char *o = spell_buf[spell_n++ % 1024];
  size_t k = 0;
  for (const char *p = raw; *p; p++)
    k += utf8_encode(b2u((unsigned char)*p), o + k);
  o[k] = 0;
  return (gguf_str){o, k};
}

#define NB 256
static const char *extra[] = {"he", "ll",   "hell", "hello",  " w",
                              "or", " wor", "ld",   " world", "aa",
                              "  ", "'s",   "12"};
static const char *merge_raw[][2] = {
    {"h", "e"}, {"l", "l"},   {"he", "ll"}, {"hell", "o"},  {" ", "w"},
    {"o", "r"}, {" w", "or"}, {"l", "d"},   {" wor", "ld"}, {"a", "a"},
    {" ", " "}, {"'", "s"},   {"1", "2"}};
#define NX (int)(sizeof extra / sizeof extra[0])

static gguf_str tokens[NB + NX + 3];
static int32_t types[NB + NX + 3];
static gguf_str merges[NX];
static char merge_text[NX][64];

static bpe *make(bpe_pre pre, int drop_byte) {
  int n = 0;
  spell_n = 0;
  for (int c = 0; c < NB; c++) {
    char raw[2] = {(char)c, 0};
    if (c == 0) { /* spell byte 0 by hand (raw would be empty) */
      static char z[4];
      size_t k = utf8_encode(b2u(0), z);
      tokens[n] = (gguf_str){z, k};
    } else {
      tokens[n] = spell(raw);
    }
    types[n++] = 1;
  }
  for (int i = 0; i < NX; i++) {
    tokens[n] = spell(extra[i]);
    types[n++] = 1;
  }
  /* the specials' spellings are wiped after the build: the tokenizer
   * must own what it matches (a GGUF is unmapped after loading) */
  static char sp_buf[3][8];
  memcpy(sp_buf[0], "<|s|>", 5);
  memcpy(sp_buf[1], "<|s|>x", 6);
  memcpy(sp_buf[2], "<u>", 3);
  tokens[n] = (gguf_str){sp_buf[0], 5}, types[n++] = 3;
  tokens[n] = (gguf_str){sp_buf[1], 6}, types[n++] = 3;
  tokens[n] = (gguf_str){sp_buf[2], 3}, types[n++] = 4;
  if (drop_byte)
    tokens[7] = (gguf_str){"\xc4\x87x", 3}; /* byte 7's spelling + "x" */
  for (int i = 0; i < NX; i++) {
    gguf_str a = spell(merge_raw[i][0]), b = spell(merge_raw[i][1]);
    snprintf(merge_text[i], sizeof merge_text[i], "%.*s %.*s", (int)a.len, a.s,
             (int)b.len, b.s);
    merges[i] = (gguf_str){merge_text[i], strlen(merge_text[i])};
  }
  bpe *b;
  char err[256];
  int rc = bpe_build(tokens, n, merges, NX, types, pre, &b, err, sizeof err);
  memset(sp_buf, 0, sizeof sp_buf);
  if (rc) {
    printf("build: %s\n", err);
    return NULL;
  }
  return b;
}

/* ids of text as a string "a b c" */
static const char *enc(const bpe *b, const char *text, size_t len, int sp) {
  static char out[4096];
  int32_t *ids;
  int64_t n;
  char err[128];
  if (bpe_encode(b, text, len, sp, &ids, &n, err, sizeof err))
    return "error";
  size_t k = 0;
  out[0] = 0;
  for (int64_t i = 0; i < n && k < sizeof out - 16; i++)
    k += (size_t)snprintf(out + k, sizeof out - k, i ? " %d" : "%d", ids[i]);
  free(ids);
  return out;
}

static void expect(const bpe *b, const char *text, const char *want) {
  const char *got = enc(b, text, strlen(text), 1);
  CHECK(strcmp(got, want) == 0, "'%s': got [%s], want [%s]", text, got, want);
}

#define ID(i) (NB + (i)) /* id of extra[i] */

static void test_merges(void) {
  bpe *b = make(BPE_PRE_GPT2, 0);
  if (!b) {
    failed++;
    return;
  }
  char w[128];
  snprintf(w, sizeof w, "%d %d", ID(3), ID(8));
  expect(b, "hello world", w); /* hello, " world" */
  snprintf(w, sizeof w, "%d %d %d", ID(3), ' ', ID(8));
  expect(b, "hello  world", w); /* "  world" -> " ", " world" */
  snprintf(w, sizeof w, "%d %d", ID(9), 'a');
  expect(b, "aaa", w); /* leftmost first on a tie */
  snprintf(w, sizeof w, "%d %d", ID(9), ID(9));
  expect(b, "aaaa", w);
  expect(b,
         "h\xcc\x81"
         "e1",
         "104 204 129 101 49"); /* é pieces, no merge */
  snprintf(w, sizeof w, "%d %d", ID(2), 'x');
  expect(b, "hellx", w);
  snprintf(w, sizeof w, "105 116 %d", ID(11));
  expect(b, "it's", w); /* contraction is its own piece */
  expect(b, "it'S", "105 116 39 83");
  snprintf(w, sizeof w, "97 %d 32 %d", ID(10), ID(12));
  expect(b, "a   12", w); /* "a", "  ", " 12" */
  expect(b, "", "");
  /* the regex: "  x" -> " ", " x"; trailing spaces stay one piece */
  snprintf(w, sizeof w, "120 %d", ID(10));
  expect(b, "x  ", w);
  /* digits: gpt2 keeps "12" together, smollm splits them */
  snprintf(w, sizeof w, "97 32 32 %d", ID(12));
  expect(b, "a  12", w);
  bpe_set_pre(b, BPE_PRE_SMOLLM);
  snprintf(w, sizeof w, "97 %d 49 50", ID(10));
  expect(b, "a  12", w);
  bpe_set_pre(b, BPE_PRE_GPT2);
  /* special tokens: longest first, anywhere, off on request */
  int s1 = NB + NX, s2 = NB + NX + 1, s3 = NB + NX + 2;
  snprintf(w, sizeof w, "%d %d %d %d", ID(3), s1, s2, s3);
  expect(b, "hello<|s|><|s|>x<u>", w);
  const char *plain = enc(b, "<u>", 3, 0);
  CHECK(strcmp(plain, "60 117 62") == 0, "specials off: %s", plain);
  CHECK(bpe_is_special(b, s1) && !bpe_is_special(b, 'a'), "is_special");
  /* decode */
  int32_t ids[3] = {ID(3), s1, ID(8)};
  char *txt;
  size_t len;
  char err[128];
  CHECK(bpe_decode(b, ids, 3, &txt, &len, err, sizeof err) == 0 &&
            strcmp(txt, "hello<|s|> world") == 0,
        "decode");
  free(txt);
  int32_t bad = 99999;
  CHECK(bpe_decode(b, &bad, 1, &txt, &len, err, sizeof err) != 0,
        "decode bad id");
  /* round trip on random bytes */
  uint64_t st = 99;
  int ok = 1;
  for (int t = 0; t < 2000 && ok; t++) {
    char text[64];
    size_t n = (size_t)(t % 60);
    for (size_t i = 0; i < n; i++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      int r = (int)(st >> 56);
      text[i] = (char)(r < 128 ? "hel o w\n12'sa<|>u"[r % 18] : r);
    }
    int32_t *v;
    int64_t k;
    if (bpe_encode(b, text, n, t & 1, &v, &k, err, sizeof err) ||
        bpe_decode(b, v, k, &txt, &len, err, sizeof err)) {
      ok = 0;
      break;
    }
    ok = len == n && memcmp(txt, text, n) == 0;
    if (!ok)
      printf("  round trip %d: %zu bytes back of %zu\n", t, len, n);
    free(txt);
    free(v);
  }
  CHECK(ok, "round trip");
  /* a very long word: linear-ish, no crash */
  size_t big = 200000;
  char *lw = malloc(big);
  for (size_t i = 0; i < big; i++)
    lw[i] = "helo"[i % 4];
  int32_t *v;
  int64_t k;
  CHECK(bpe_encode(b, lw, big, 1, &v, &k, err, sizeof err) == 0 && k > 0,
        "long word");
  free(v);
  free(lw);
  bpe_free(b);
}

static void test_dropped_byte(void) {
  bpe *b = make(BPE_PRE_GPT2, 1); /* byte 7 has no token */
  if (!b) {
    failed++;
    return;
  }
  expect(b, "a\007b", "97 98");
  bpe_free(b);
}

static void test_bad_vocab(void) {
  bpe *b = make(BPE_PRE_GPT2, 0);
  bpe_free(b);
  char err[256];
  gguf_str m1[1] = {{"h", 1}};
  CHECK(bpe_build(tokens, NB, m1, 1, NULL, BPE_PRE_GPT2, &b, err, sizeof err) !=
                0 &&
            strstr(err, "two tokens"),
        "merge without space: %s", err);
  gguf_str m2[1] = {{"h  e", 4}};
  CHECK(bpe_build(tokens, NB, m2, 1, NULL, BPE_PRE_GPT2, &b, err, sizeof err) !=
            0,
        "merge with two spaces");
  gguf_str m3[1] = {{"h e", 3}}; /* "he" is not among the 256 */
  CHECK(bpe_build(tokens, NB, m3, 1, NULL, BPE_PRE_GPT2, &b, err, sizeof err) !=
                0 &&
            strstr(err, "result"),
        "merge result missing: %s", err);
  CHECK(bpe_build(tokens, 0, NULL, 0, NULL, BPE_PRE_GPT2, &b, err,
                  sizeof err) != 0,
        "empty vocabulary");
}

int main(void) {
  test_merges();
  test_dropped_byte();
  test_bad_vocab();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
