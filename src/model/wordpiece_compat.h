/* wordpiece_compat.h - the generated exceptions behind wordpiece.c
 * (internal): inclusive code point ranges, sorted, where the reference
 * tokenizer's category test differs from unicode.h's. */
#ifndef ATTN_MODEL_WORDPIECE_COMPAT_H
#define ATTN_MODEL_WORDPIECE_COMPAT_H

#include <stdint.h>

extern const int wp_flip_control_count;
extern const uint32_t wp_flip_control[][2];
extern const int wp_flip_mark_count;
extern const uint32_t wp_flip_mark[][2];
extern const int wp_flip_punct_count;
extern const uint32_t wp_flip_punct[][2];

#endif
