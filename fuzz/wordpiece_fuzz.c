/*
 * wordpiece_fuzz.c - libFuzzer target for the WordPiece tokenizer
 * (src/model/wordpiece.c): the input is split at its first 0xFF 0x00 pair
 * into a vocabulary (hostile) and a text; without the pair it is a text
 * for a small built-in vocabulary.
 *
 * A vocabulary either loads or fails with a message; a text always
 * tokenizes into [CLS] ... [SEP] with ids inside the vocabulary, the
 * same ids twice (deterministic), and truncation gives a prefix of the
 * untruncated ids plus [SEP].
 */
#include "wordpiece.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char builtin[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
                              "the\nquick\n##s\n##ing\na\n##b\nb\n,\n.\n"
                              "\xe4\xb8\xad\ncafe\n##\xc3\xa9\n";

static void run(const wordpiece *wp, const char *text, size_t n) {
  int32_t *ids, *ids2, *cut;
  int64_t k, k2, kc;
  char err[128];
  if (wordpiece_encode(wp, text, n, 0, &ids, &k, err, sizeof err) != 0)
    return; /* out of memory only */
  const int64_t V = wordpiece_vocab_size(wp);
  if (k < 2 || ids[0] != wordpiece_id(wp, "[CLS]") ||
      ids[k - 1] != wordpiece_id(wp, "[SEP]"))
    abort();
  for (int64_t i = 0; i < k; i++)
    if (ids[i] < 0 || ids[i] >= V || !wordpiece_token(wp, ids[i]))
      abort();
  if (wordpiece_encode(wp, text, n, 0, &ids2, &k2, err, sizeof err) == 0) {
    if (k2 != k || memcmp(ids, ids2, (size_t)k * sizeof *ids) != 0)
      abort();
    free(ids2);
  }
  const int64_t max = 2 + (int64_t)(n % 7);
  if (wordpiece_encode(wp, text, n, max, &cut, &kc, err, sizeof err) == 0) {
    int64_t want = k < max ? k : max;
    if (kc != want || memcmp(cut, ids, (size_t)(kc - 1) * sizeof *ids) != 0 ||
        cut[kc - 1] != ids[k - 1])
      abort();
    free(cut);
  }
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  size_t split = size;
  for (size_t i = 0; i + 1 < size; i++)
    if (data[i] == 0xFF && data[i + 1] == 0x00) {
      split = i;
      break;
    }
  wordpiece *wp = NULL;
  char err[256] = "";
  if (split < size) {
    if (wordpiece_from_memory(s, split, &wp, err, sizeof err) != 0) {
      if (!err[0] || wp)
        abort();
      return 0;
    }
    run(wp, s + split + 2, size - split - 2);
  } else {
    if (wordpiece_from_memory(builtin, sizeof builtin - 1, &wp, err,
                              sizeof err) != 0)
      abort();
    run(wp, s, size);
  }
  wordpiece_free(wp);
  return 0;
}
