/*
 * task_numbers.c - the encoder-decoder's task (encdec.h): numbers 0 ..
 * 999,999 written in digits, translated to English words.
 *
 *   "4721"   -> four thousand seven hundred twenty one <eos>
 *   "300015" -> three hundred thousand fifteen <eos>
 *
 * It needs cross-attention: the words follow the digits in order but not
 * one to one ("teen" numbers, zeros that say nothing, "thousand" after
 * the third digit from the right), so the decoder must find its place in
 * the source. Generated from a seed; the held-out numbers (about 10% of
 * 100 .. 999,999, chosen by a hash) never appear in training.
 */
#include "encdec.h"

#include <string.h>

/* target ids 3.. */
static const char *const words[] = {
    "zero",     "one",      "two",      "three",   "four",    "five",
    "six",      "seven",    "eight",    "nine",    "ten",     "eleven",
    "twelve",   "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",   "thirty",  "forty",   "fifty",
    "sixty",    "seventy",  "eighty",   "ninety",  "hundred", "thousand"};
#define W_ZERO 3
#define W_TWENTY (W_ZERO + 20) /* twenty .. ninety: W_TWENTY + tens - 2 */
#define W_HUNDRED (W_ZERO + 28)
#define W_THOUSAND (W_ZERO + 29)

const char *task_numbers_token(int32_t id) {
  if (id == TASK_NUM_PAD)
    return "<pad>";
  if (id == TASK_NUM_BOS)
    return "<bos>";
  if (id == TASK_NUM_EOS)
    return "<eos>";
  if (id >= W_ZERO && id < TASK_NUM_TGT_VOCAB)
    return words[id - W_ZERO];
  return "?";
}

int task_numbers_source(int64_t n, int32_t *src) {
  char buf[32];
  int len = 0;
  do {
    buf[len++] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0 && len < TASK_NUM_SRC_MAX);
  for (int i = 0; i < TASK_NUM_SRC_MAX; i++)
    src[i] = i < len ? 1 + (buf[len - 1 - i] - '0') : TASK_NUM_PAD;
  return len;
}

/* 1 .. 999 */
static int below_thousand(int64_t n, int32_t *w) {
  int k = 0;
  if (n >= 100) {
    w[k++] = (int32_t)(W_ZERO + n / 100);
    w[k++] = W_HUNDRED;
    n %= 100;
  }
  if (n >= 20) {
    w[k++] = (int32_t)(W_TWENTY + n / 10 - 2);
    n %= 10;
    if (n)
      w[k++] = (int32_t)(W_ZERO + n);
  } else if (n > 0) {
    w[k++] = (int32_t)(W_ZERO + n);
  }
  return k;
}

int task_numbers_words(int64_t n, int32_t *w) {
  if (n == 0) {
    w[0] = W_ZERO;
    return 1;
  }
  int k = 0;
  if (n >= 1000) {
    k += below_thousand(n / 1000, w);
    w[k++] = W_THOUSAND;
  }
  return k + below_thousand(n % 1000, w + k);
}

int task_numbers_held_out(int64_t n) {
  return n >= 100 && train_hash64((uint64_t)n ^ 0x5eed5eedULL) % 10 == 0;
}

int64_t task_numbers_sample(train_rng *r, int held_out) {
  for (;;) {
    const int digits = held_out ? 3 + (int)train_rng_below(r, 4)
                                : 1 + (int)train_rng_below(r, 6);
    int64_t lo = 1, hi = 10;
    for (int i = 1; i < digits; i++) {
      lo *= 10;
      hi *= 10;
    }
    if (digits == 1)
      lo = 0;
    const int64_t n = lo + train_rng_below(r, hi - lo);
    if (task_numbers_held_out(n) == held_out)
      return n;
  }
}

void task_numbers_batch(train_rng *r, int held_out, int64_t b, int32_t *src,
                        int32_t *src_len, int32_t *tgt_in, int32_t *tgt_out,
                        int64_t *numbers) {
  const int S = TASK_NUM_SRC_MAX, T = TASK_NUM_TGT_MAX;
  for (int64_t i = 0; i < b; i++) {
    const int64_t n = task_numbers_sample(r, held_out);
    int32_t w[TASK_NUM_TGT_MAX];
    src_len[i] = task_numbers_source(n, src + i * S);
    const int k = task_numbers_words(n, w);
    for (int t = 0; t < T; t++) {
      tgt_in[i * T + t] = t == 0   ? TASK_NUM_BOS
                          : t <= k ? w[t - 1]
                                   : TASK_NUM_PAD;
      tgt_out[i * T + t] = t < k ? w[t] : t == k ? TASK_NUM_EOS : -1;
    }
    if (numbers)
      numbers[i] = n;
  }
}
