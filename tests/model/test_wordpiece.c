/*
 * test_wordpiece.c - the WordPiece tokenizer (src/model/wordpiece.c) on a
 * small vocabulary made here: each rule of wordpiece.h by hand-worked
 * examples, and hostile vocabularies. Parity with Hugging Face on the
 * real vocabulary is tests/model/test_encoder_parity.py.
 */
#include "wordpiece.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" /* 0-4 */
                            "un\n##aff\n##able\naff\n##a\n"        /* 5-9 */
                            "a\n,\n!\nhello\n\xe4\xb8\xad\n"       /* 10-14 */
                            "cafe\nnaive\nx\n##x\n"                /* 15-18 */
                            "istanbul\n";                          /* 19 */

/* text must tokenize to the ids of want (terminated by -1). */
static void expect(const wordpiece *wp, const char *text, int64_t max,
                   const int *want, const char *what) {
  int32_t *ids = NULL;
  int64_t n = 0;
  char err[128];
  int ok = wordpiece_encode(wp, text, strlen(text), max, &ids, &n, err,
                            sizeof err) == 0;
  int64_t k = 0;
  while (want[k] >= 0)
    k++;
  ok = ok && n == k;
  for (int64_t i = 0; ok && i < n; i++)
    ok = ids[i] == want[i];
  if (!ok) {
    printf("FAIL: %s: got", what);
    for (int64_t i = 0; i < n; i++)
      printf(" %d", ids[i]);
    printf("\n");
    failed++;
  } else {
    passed++;
  }
  free(ids);
}

int main(void) {
  wordpiece *wp;
  char err[256];
  if (wordpiece_from_memory(vocab, sizeof vocab - 1, &wp, err, sizeof err)) {
    printf("FAIL: load: %s\n0 passed, 1 failed\n", err);
    return 1;
  }
  expect(wp, "", 0, (int[]){2, 3, -1}, "empty text");
  expect(wp, "unaffable", 0, (int[]){2, 5, 6, 7, 3, -1}, "greedy pieces");
  expect(wp, "affa", 0, (int[]){2, 8, 9, 3, -1}, "## continuation");
  expect(wp, "UnAffable, Hello!", 0, (int[]){2, 5, 6, 7, 11, 13, 12, 3, -1},
         "lowercase and punctuation");
  expect(wp, "unaffablez", 0, (int[]){2, 1, 3, -1},
         "an unmatchable part makes the word [UNK]");
  expect(wp, " \t\n hello \r\n\v", 0, (int[]){2, 13, 3, -1}, "whitespace runs");
  expect(wp, "Caf\xc3\xa9 NA\xc3\x8fVE \xc4\xb0stanbul", 0,
         (int[]){2, 15, 16, 19, 3, -1}, "accents stripped (NFD, Mn)");
  expect(wp, "x\xe4\xb8\xadx", 0, (int[]){2, 17, 14, 17, 3, -1},
         "a CJK ideograph is a word");
  expect(wp, "he\xc2\xadllo\x01 x\xef\xbf\xbd\xe2\x80\x8b", 0,
         (int[]){2, 13, 17, 3, -1},
         "soft hyphen, control, U+FFFD, zero-width space dropped");
  expect(wp,
         "a\xff"
         "a",
         0, (int[]){2, 10, 9, 3, -1}, "invalid UTF-8 is dropped");
  expect(wp, "[MASK]hello[SEP] [mask]", 0, (int[]){2, 4, 13, 3, 1, 1, 1, 3, -1},
         "special tokens in the text, as written only");
  char longw[202];
  memset(longw, 'x', 101);
  longw[101] = 0;
  expect(wp, longw, 0, (int[]){2, 1, 3, -1}, "a word of 101 characters");
  longw[100] = 0;
  int32_t *ids;
  int64_t n;
  if (wordpiece_encode(wp, longw, 100, 0, &ids, &n, err, sizeof err) == 0) {
    int ok = n == 102 && ids[1] == 17 && ids[2] == 18 && ids[100] == 18;
    printf("%s: a word of 100 characters is 100 pieces\n", ok ? "ok" : "FAIL");
    ok ? passed++ : failed++;
    free(ids);
  }
  expect(wp, "hello hello hello hello", 4, (int[]){2, 13, 13, 3, -1},
         "truncation keeps [SEP]");
  expect(wp, "hello", 2, (int[]){2, 3, -1}, "truncation to 2");
  int bad_ok = wordpiece_encode(wp, "x", 1, 1, &ids, &n, err, sizeof err) == -1;
  printf("%s: max_tokens 1 is refused\n", bad_ok ? "ok" : "FAIL");
  bad_ok ? passed++ : failed++;
  if (wordpiece_token(wp, 14) &&
      strcmp(wordpiece_token(wp, 14), "\xe4\xb8\xad") == 0 &&
      !wordpiece_token(wp, 20) && wordpiece_vocab_size(wp) == 20)
    passed++;
  else
    failed++, printf("FAIL: wordpiece_token\n");
  wordpiece_free(wp);

  /* hostile vocabularies */
  struct {
    const char *text;
    size_t n;
    int ok;
  } vs[] = {
#define V(s, ok) {s, sizeof s - 1, ok}
      V("", 0),
      V("\n\n\n", 0),
      V("[UNK]\n[CLS]\n", 0),
      V("[UNK]\r\n[CLS]\r\n[SEP]", 1),
      V("x\0y\n[UNK]\n[CLS]\n[SEP]\n", 1),
      V("[UNK]\n[UNK]\n[CLS]\n[SEP]\n", 1),
#undef V
  };
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
    int rc = wordpiece_from_memory(vs[i].text, vs[i].n, &wp, err, sizeof err);
    int ok = (rc == 0) == vs[i].ok && (rc == 0 || (err[0] && !wp));
    if (rc == 0 && i == 5)
      ok = ok && wordpiece_id(wp, "[UNK]") == 1; /* the last id wins */
    printf("%s: vocabulary %zu %s\n", ok ? "ok" : "FAIL", i,
           rc == 0 ? "loads" : err);
    ok ? passed++ : failed++;
    wordpiece_free(wp);
  }
  if (wordpiece_load("/dev/zero", &wp, err, sizeof err) == -1 &&
      strstr(err, "regular"))
    passed++;
  else
    failed++, printf("FAIL: /dev/zero as a vocabulary\n");
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
