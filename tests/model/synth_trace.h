/*
 * synth_trace.h - synthetic traces for the picture tests: random Q and K
 * (uniform in [-amp, amp], a fixed xorshift stream) and the LSE of every
 * row as libattn's attn_forward returns it, so the tests need no model.
 */
#ifndef ATTN_TEST_SYNTH_TRACE_H
#define ATTN_TEST_SYNTH_TRACE_H

#include "trace.h"

#include <stdint.h>

/* Fills t (model_trace_alloc'ed here) with n_layers layers of random Q/K
 * of the given shape and their LSE; tokens "t0", "t1", ... unless words
 * (n strings) is given. Returns 0, or -1 (t left empty). */
int synth_trace(model_trace *t, int64_t n_layers, int64_t seq, int64_t hq,
                int64_t hk, int64_t d, int causal, float amp, uint64_t seed,
                const char *const *words);
/* The same with seq_k keys (cross-attention; causal is bottom-right) and,
 * when key_words is given, seq_k key tokens. */
int synth_trace_qk(model_trace *t, int64_t n_layers, int64_t seq, int64_t seq_k,
                   int64_t hq, int64_t hk, int64_t d, int causal, float amp,
                   uint64_t seed, const char *const *words,
                   const char *const *key_words);

#endif
