/*
 * encdec.h - the encoder-decoder Transformer of "Attention Is All You
 * Need" (Vaswani et al. 2017), trained from scratch (encdec.c), and its
 * task: numbers written in digits to English words (task_numbers.c).
 *
 * The model (post-LN, as the paper):
 *   encoder  x = emb_src(src) sqrt(D) + PE          [B, S, D]
 *            per layer: h = LN1(x + SelfAttn(x))    (keys: the src_len
 *                       x = LN2(h + FFN(h))          real tokens)
 *   decoder  y = emb_tgt(tgt_in) sqrt(D) + PE        [B, T, D]
 *            per layer: h1 = LN1(y + CausalSelfAttn(y))
 *                       h2 = LN2(h1 + CrossAttn(h1, memory))
 *                       y  = LN3(h2 + FFN(h2))
 *   logits = y Wout^T + bout                          [B, T, V]
 *   FFN(h) = ReLU(h W1^T + b1) W2^T + b2; PE the sinusoidal table
 *   (attn_sinusoidal_table); attention is libattn's layer (attn/layer.h):
 *   self-attention fused in_proj (nn.MultiheadAttention's layout), cross
 *   separate q/k/v projections. Dropout (p, on the embeddings and every
 *   sublayer output before its residual) only when config.dropout > 0.
 */
#ifndef ATTN_MODEL_ENCDEC_H
#define ATTN_MODEL_ENCDEC_H

#include "train_ops.h"

/* ---- the task: numbers 0 .. 999,999 in digits -> English words -------- */
#define TASK_NUM_SRC_MAX 6    /* source digits                             */
#define TASK_NUM_TGT_MAX 10   /* target tokens: 9 words + EOS (or BOS + 9)  */
#define TASK_NUM_SRC_VOCAB 11 /* PAD 0, digits '0'..'9' -> 1..10          */
#define TASK_NUM_TGT_VOCAB 33 /* PAD 0, BOS 1, EOS 2, words 3..32         */
#define TASK_NUM_PAD 0
#define TASK_NUM_BOS 1
#define TASK_NUM_EOS 2

/* A number's digits as source ids (src [TASK_NUM_SRC_MAX], padded with
 * PAD); returns the length. */
int task_numbers_source(int64_t n, int32_t *src);
/* Its words as target ids (words [TASK_NUM_TGT_MAX - 1]); returns the
 * count ("four thousand seven hundred twenty one": 6). */
int task_numbers_words(int64_t n, int32_t *words);
/* The word of a target id ("<pad>", "<bos>", "<eos>", "zero", ...). */
const char *task_numbers_token(int32_t id);
/* 1 when n belongs to the held-out split (about 10% of the numbers >= 100,
 * by a hash; every number below 100 is for training). */
int task_numbers_held_out(int64_t n);
/* A number of the training (held_out 0) or held-out split: a digit count
 * uniform in 1..6 (3..6 for held-out), then uniform among those. */
int64_t task_numbers_sample(train_rng *r, int held_out);
/* A batch of b numbers: src [b, S], src_len [b], tgt_in [b, T] (BOS then
 * the words, PAD after), tgt_out [b, T] (the words then EOS, -1 after: the
 * loss ignores them); numbers [b] (NULL: not wanted). */
void task_numbers_batch(train_rng *r, int held_out, int64_t b, int32_t *src,
                        int32_t *src_len, int32_t *tgt_in, int32_t *tgt_out,
                        int64_t *numbers);

/* ---- the model ---------------------------------------------------------- */
typedef struct encdec_config {
  int64_t vocab_src, vocab_tgt; /* token ids                             */
  int64_t max_src, max_tgt;     /* S, T: padded lengths                  */
  int64_t d_model, heads, d_ff; /* D, H, F                               */
  int64_t n_enc, n_dec;         /* layers                                */
  int64_t batch;                /* B: most sequences of one call         */
  float dropout;                /* 0 = off                               */
  float label_smoothing;        /* eps of the cross-entropy              */
  int threads;                  /* attention threads (0 = library's)     */
} encdec_config;

/* The defaults of `attn train encdec`: D 64, H 4, F 256, 2 + 2 layers,
 * B 64, no dropout, smoothing 0.1, the numbers task's sizes. */
void encdec_config_default(encdec_config *c);

typedef struct encdec encdec;

/* Builds a model with weights drawn from seed: embeddings N(0, 1/D), the
 * attention layers attn_layer_init_weights, the other linear layers
 * nn.Linear's U(-1/sqrt(in), 1/sqrt(in)) (biases too), LN weights 1 and
 * biases 0. Returns 0, or -1 with a reason. */
int encdec_create(const encdec_config *c, uint64_t seed, encdec **out,
                  char *err, size_t err_size);
void encdec_free(encdec *m);

/* Every trainable tensor (the attention layers' point into their
 * buffers), with its checkpoint name ("enc.0.self_attn.in_proj_weight"). */
train_param *encdec_params(encdec *m, int *n);

/* Forward and backward of one batch of b <= B sequences: src [b, S],
 * src_len [b] (1..S), tgt_in [b, T], tgt_out [b, T] (-1 = ignored).
 * Gradients are ADDED (zero them first). *loss gets the mean loss.
 * Returns 0, or -1 with a reason (a bad id or length, a library error). */
int encdec_train_step(encdec *m, int64_t b, const int32_t *src,
                      const int32_t *src_len, const int32_t *tgt_in,
                      const int32_t *tgt_out, double *loss, char *err,
                      size_t err_size);

/* The loss of a batch, forward only (teacher forcing); logits [b, T, V]
 * (NULL: not wanted) gets the logits. */
int encdec_eval_loss(encdec *m, int64_t b, const int32_t *src,
                     const int32_t *src_len, const int32_t *tgt_in,
                     const int32_t *tgt_out, double *loss, float *logits,
                     char *err, size_t err_size);

/* Greedy decoding of b <= B sources through the decoder's KV caches
 * (attn_layer_decode, one token a step for all sequences): out [b, T]
 * gets the generated ids (EOS included, PAD after it); logits [b, T, V]
 * (NULL: not wanted) each step's logits. */
int encdec_greedy(encdec *m, int64_t b, const int32_t *src,
                  const int32_t *src_len, int32_t *out, float *logits,
                  char *err, size_t err_size);

/* The attention of every layer for one example (src of src_len tokens,
 * tgt_in of tgt_len tokens, BOS first): *probes gets n_enc + 2 n_dec
 * probes (train_ops.h) named "enc.L.self", "dec.L.self" (causal),
 * "dec.L.cross" (queries the target tokens, keys the source tokens).
 * Free each with train_attn_probe_free and the array with free(). */
int encdec_probe(encdec *m, const int32_t *src, int64_t src_len,
                 const int32_t *tgt_in, int64_t tgt_len,
                 train_attn_probe **probes, int *n, char *err, size_t err_size);

/* Loads a checkpoint `attn train encdec` wrote (model.safetensors): the
 * configuration from its metadata, every tensor by name; batch is the
 * most sequences a later call may pass, threads the attention threads.
 * Returns 0, or -1 with a reason. */
int encdec_load(const char *path, int64_t batch, int threads, encdec **out,
                char *err, size_t err_size);

/* The model's configuration as checkpoint metadata: pairs of strings
 * (kv[2i] key, kv[2i+1] value; *n pairs) valid while m lives. */
const char *const *encdec_meta(encdec *m, int *n);

#endif
