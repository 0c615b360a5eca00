/*
 * bpe.h - byte-level BPE (GPT-2, Llama-3, SmolLM2 style), built from a
 * GGUF's tokenizer.ggml.tokens / merges / token_type.
 *
 * Encoding a text:
 *   1. special tokens (token_type CONTROL = 3 spelled in the byte alphabet,
 *      and USER_DEFINED = 4) are recognised anywhere in the text, longest
 *      first at each position, as Hugging Face's added tokens are (so
 *      "<|im_start|>user" is [1, 4093]); bpe_encode's specials = 0 turns
 *      this off and treats them as plain text.
 *   2. the rest is pre-tokenized: with BPE_PRE_SMOLLM every \p{N} character
 *      first becomes a piece of its own (SmolLM2's tokenizer.json: Digits
 *      (individual_digits), llama.cpp's "smollm"), then GPT-2's regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 *        \s+(?!\S)|\s+
 *      cuts each piece (written by hand on unicode.h's categories).
 *   3. each piece's bytes start as byte tokens (GPT-2's byte-to-unicode
 *      alphabet) and are merged by rank, lowest first, leftmost first on a
 *      tie (Hugging Face tokenizers' BPE without dropout).
 * Any byte string is accepted (invalid UTF-8 bytes are symbols that are
 * neither letters, numbers nor spaces). A byte the vocabulary has no token
 * for (SmolLM2 lacks 0x04, 0x06, 0x13, 0x14, 0x16, 0x1d and bytes that
 * never occur in UTF-8) is dropped, as Hugging Face's BPE without an
 * unknown token does; decoding the ids gives back every other byte.
 */
#ifndef ATTN_MODEL_BPE_H
#define ATTN_MODEL_BPE_H

#include "gguf.h"

#include <stddef.h>
#include <stdint.h>

typedef enum bpe_pre {
  BPE_PRE_GPT2 = 0,  /* GPT-2's regex alone                           */
  BPE_PRE_SMOLLM = 1 /* each \p{N} on its own, then GPT-2's regex     */
} bpe_pre;

typedef struct bpe bpe;

/* From token spellings (byte-level alphabet, as in a GGUF), merges "a b"
 * in rank order and token types (NULL: all normal). Every merge's parts
 * and result must be tokens: else -1 and the reason in err. */
int bpe_build(const gguf_str *tokens, int64_t n_tokens, const gguf_str *merges,
              int64_t n_merges, const int32_t *types, bpe_pre pre, bpe **out,
              char *err, size_t err_size);
/* From a GGUF (tokenizer.ggml.model must be "gpt2"); the pre-tokenizer
 * from tokenizer.ggml.pre ("smollm": BPE_PRE_SMOLLM, else GPT-2's). */
int bpe_from_gguf(const gguf_file *f, bpe **out, char *err, size_t err_size);
void bpe_free(bpe *b);

void bpe_set_pre(bpe *b, bpe_pre pre);
bpe_pre bpe_get_pre(const bpe *b);
int64_t bpe_vocab_size(const bpe *b);

/* Ids of text (len bytes): *ids is malloc'd (free it; NULL when *n is 0).
 * 0, or -1 on allocation failure. */
int bpe_encode(const bpe *b, const char *text, size_t len, int specials,
               int32_t **ids, int64_t *n, char *err, size_t err_size);

/* The bytes a token stands for (a special token: its text); 0, or -1 for
 * an id outside the vocabulary. */
int bpe_token_bytes(const bpe *b, int32_t id, const char **s, size_t *len);
/* 1 when id is a special (control or user-defined) token. */
int bpe_is_special(const bpe *b, int32_t id);

/* Bytes of ids concatenated into *out (malloc'd, NUL-terminated, *len
 * without the NUL); 0, or -1 for an id outside the vocabulary. */
int bpe_decode(const bpe *b, const int32_t *ids, int64_t n, char **out,
               size_t *len, char *err, size_t err_size);

#endif
