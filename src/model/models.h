/*
 * models.h - the two pretrained models as `attn show` needs them: run one
 * text and keep what is needed to draw its attention (trace.h).
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

#endif
