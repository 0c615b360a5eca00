/*
 * bert.h - a BERT encoder (all-MiniLM-L6-v2) on libattn's multi-head layer:
 * sentence embeddings as sentence-transformers computes them (mean of the
 * last hidden states over the real tokens, L2-normalised).
 *
 * The model directory holds model.safetensors, vocab.txt and config.json
 * (Hugging Face's BertModel); sentence_bert_config.json, when present,
 * gives max_seq_length (sentence-transformers' truncation, 256 for this
 * model), else the position table's length is used.
 */
#ifndef ATTN_MODEL_BERT_H
#define ATTN_MODEL_BERT_H

#include "trace.h"
#include "wordpiece.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bert_config {
  int64_t vocab;      /* V   word embeddings (30522)                     */
  int64_t hidden;     /* H   model width (384)                            */
  int64_t layers;     /* L   (6)                                          */
  int64_t heads;      /* NH  (12); head dim H / NH                        */
  int64_t inter;      /* FF  feed-forward width (1536)                   */
  int64_t max_pos;    /* P   learned positions (512)                      */
  int64_t type_vocab; /* token types (2); every token here is type 0     */
  float ln_eps;       /* LayerNorm epsilon (1e-12)                        */
  int64_t max_seq;    /* tokens an embedding reads, [CLS] and [SEP] in   */
} bert_config;

typedef struct bert bert;

/* Loads the model in directory dir. 0, or -1 with a one-line reason. */
int bert_load(const char *dir, bert **out, char *err, size_t err_size);
/* Accepts NULL. */
void bert_free(bert *m);
const bert_config *bert_get_config(const bert *m);
const wordpiece *bert_tokenizer(const bert *m);

/* The encoder on a padded batch: ids [B, S] (rows past lens[b] are
 * padding, never seen by the real tokens), lens [B] in 1..S <= max_pos.
 * hidden: out [B, S, H], the last layer's states (padding rows hold
 * finite values of no meaning). trace: NULL, or (B = 1) filled with every
 * layer's Q, K and LSE (trace.h; allocated here). threads: 0 = default;
 * above 0 it also sets OpenBLAS's thread count, which is process-wide.
 * One call at a time per model (it owns the scratch buffers).
 * 0, or -1 with a reason. */
int bert_forward(bert *m, const int32_t *ids, const int32_t *lens, int64_t B,
                 int64_t S, int threads, float *hidden, model_trace *trace,
                 char *err, size_t err_size);

/* Sentence embeddings of n texts: out [n, H], each the mean of its real
 * tokens' last states, divided by its L2 norm. Texts are tokenized with
 * truncation at max_seq tokens, sorted by length and run in padded
 * batches of up to 32 (sentence-transformers' default), so little padding
 * is computed. 0, or -1 with a reason. */
int bert_embed(bert *m, const char *const *texts, int64_t n, int threads,
               float *out, char *err, size_t err_size);

#endif
