/*
 * models.h - the models `attn show` draws, the two pretrained ones and the
 * two `attn train` writes: run one input and keep what is needed to draw
 * its attention (trace.h).
 *
 * weights: NULL or "" to find the model without configuration (locate.h),
 * else the --weights path. threads: 0 = the library's default. On failure
 * both return -1 with a one-line reason in err and leave trace empty.
 */
#ifndef ATTN_MODEL_MODELS_H
#define ATTN_MODEL_MODELS_H

#include "trace.h"

#include <stddef.h>

/* all-MiniLM-L6-v2 (bert.c): tokens are WordPiece pieces with [CLS] and
 * [SEP]; 6 layers x 12 heads, bidirectional (causal = 0). */
int encoder_trace(const char *weights, const char *text, int threads,
                  model_trace *trace, char *err, size_t err_size);

/* SmolLM2-135M-Instruct (llama.c): the prompt's BPE tokens (display text
 * decoded from bytes); 30 layers x 9 query / 3 key heads, causal = 1. */
int decoder_trace(const char *weights, const char *text, int threads,
                  model_trace *trace, char *err, size_t err_size);

/* The encoder-decoder `attn train encdec` wrote (weights: its
 * model.safetensors; NULL or "": train-encdec/model.safetensors) on the
 * number in text (1 to 6 digits): decodes it greedily, then fills
 *   traces[0]  encoder self-attention over the digits
 *   traces[1]  decoder self-attention (causal) over BOS and the words read
 *   traces[2]  cross-attention: rows the words written (the last <eos>),
 *              columns the digits (key tokens)
 * and words (may be NULL) with the words written, space-separated. */
int encdec_traces(const char *weights, const char *text, int threads,
                  model_trace traces[3], char *words, size_t words_size,
                  char *err, size_t err_size);

/* The ViT `attn train vit` wrote (NULL or "": train-vit/model.safetensors)
 * on one image: image is an index into scikit-learn's digits (0..1796) or
 * a .npy of 64 values in 0..16 (8x8). Fills t (tokens "cls", then the
 * patches "r<row>c<col>" row by row), pixels (0..16), label (the digit of
 * an indexed image, else -1) and predicted (the model's class). */
int vit_trace(const char *weights, const char *image, int threads,
              model_trace *t, float pixels[64], int *label, int *predicted,
              char *err, size_t err_size);

#endif
