/*
 * llama.h - a Llama-architecture decoder (SmolLM2-135M-Instruct) on
 * libattn, from a GGUF file: the prompt through attn_forward (causal),
 * then one token at a time from a paged KV cache through the decode
 * kernel (attn_kv_cache_append / attn_kv_cache_attend). Weights are
 * dequantised to f32 at load; the dense products go through CBLAS.
 *
 * RoPE: llama.cpp's converter permutes the rows of Q and K in the GGUF so
 * that its interleaved rotation (pairs x[2i], x[2i+1]) gives what the
 * original model computes with the half rotation (x[i], x[i + d/2]).
 * We use the GGUF's weights as they are, with ATTN_ROPE_INTERLEAVED:
 * every score is the same as transformers' (which un-permutes and rotates
 * by halves); only the order of the components inside each head differs.
 */
#ifndef ATTN_MODEL_LLAMA_H
#define ATTN_MODEL_LLAMA_H

#include "bpe.h"
#include "trace.h"

#include <stddef.h>
#include <stdint.h>

typedef struct llama_config {
  int64_t n_layers; /* 30                                 */
  int64_t dim;      /* 576: the residual stream           */
  int64_t heads_q;  /* 9                                  */
  int64_t heads_kv; /* 3                                  */
  int64_t head_dim; /* 64 = dim / heads_q                 */
  int64_t ffn;      /* 1536: SwiGLU hidden width          */
  int64_t vocab;    /* 49152                              */
  int64_t context;  /* 8192: longest sequence             */
  double rope_base; /* 100000                             */
  float eps;        /* 1e-5: RMSNorm                      */
  int32_t bos, eos; /* 1, 2 (<|im_start|>, <|im_end|>)    */
  int add_bos;      /* tokenizer.ggml.add_bos_token (0)   */
} llama_config;

typedef struct llama llama;
typedef struct llama_session llama_session;

/* Loads path (a GGUF; NULL or "" = found by locate.h). threads: 0 = the
 * library's default, else the attention kernels' and OpenBLAS's count.
 * 0, or -1 with a one-line reason in err. */
int llama_load(const char *path, int threads, llama **out, char *err,
               size_t err_size);
void llama_free(llama *m);
const llama_config *llama_get_config(const llama *m);
const bpe *llama_tokenizer(const llama *m);

/* A generation: KV caches (paged, f32) for up to capacity tokens. */
int llama_session_create(llama *m, int64_t capacity, llama_session **out,
                         char *err, size_t err_size);
void llama_session_free(llama_session *s);
int64_t llama_session_length(const llama_session *s);

/* Runs n tokens (n >= 1) after what the session holds: the first call (an
 * empty session) goes through attn_forward with a causal mask and fills
 * the caches; later calls of one token attend to the caches through the
 * decode kernel (more than one later token: one at a time). logits
 * (vocab floats, may be NULL) gets the last position's. trace (may be
 * NULL; first call only) is allocated and filled with each layer's Q, K
 * after RoPE and the LSE of attn_forward. 0, or -1 with the reason. */
int llama_forward(llama_session *s, const int32_t *ids, int64_t n,
                  float *logits, model_trace *trace, char *err,
                  size_t err_size);

/* OpenBLAS's thread count for the dense products (threads > 0; a
 * process-wide setting, for the command line). */
void llama_set_blas_threads(int threads);

/* The next token: argmax of logits when temp <= 0 (the first maximum),
 * else a draw from softmax(logits / temp) with *rng (splitmix64 state). */
int32_t llama_sample(const float *logits, int64_t n, float temp, uint64_t *rng);

/* Token ids of text with the decoder's tokenizer (weights as for
 * llama_load; special tokens such as <|im_start|> recognised in the
 * text; no BOS, as the GGUF says): *ids malloc'd. 0, or -1 with the
 * reason. */
int decoder_tokenize(const char *weights, const char *text, int32_t **ids,
                     int64_t *n, char *err, size_t err_size);

#endif
