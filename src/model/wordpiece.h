/*
 * wordpiece.h - BERT's uncased WordPiece tokenizer from a vocab.txt,
 * matching Hugging Face's tokenizers (BertNormalizer with clean_text,
 * handle_chinese_chars, lowercase and strip_accents; BertPreTokenizer;
 * WordPiece with "##" continuations and max_input_chars_per_word 100;
 * the [CLS] A [SEP] template) token for token:
 *
 *   1. the special tokens [PAD] [UNK] [CLS] [SEP] [MASK] written in the
 *      text are matched first, as they are (not normalised)
 *   2. clean: drop U+0000, U+FFFD and control characters (Cc, Cf, Co but
 *      tab, newline, carriage return); whitespace becomes a space
 *   3. CJK ideographs get a space on each side
 *   4. NFD, nonspacing marks (Mn) dropped, then lowercase (per code point)
 *   5. words: split on whitespace; each punctuation character (ASCII
 *      33-47, 58-64, 91-96, 123-126 and Unicode P*) is a word of its own
 *   6. each word: [UNK] when longer than 100 code points, else greedy
 *      longest match first, pieces after the first prefixed "##"; a word
 *      with an unmatchable part is one [UNK]
 *
 * The reference takes the categories of steps 2, 4 and 5 from tables of
 * an older Unicode version than unicode.h's; wordpiece_compat.c lists the
 * differences (scripts/gen_wordpiece_compat.py), so those agree too.
 * Invalid UTF-8 in the text decodes to U+FFFD (unicode.h), which step 2
 * drops. The vocabulary file is hostile input.
 */
#ifndef ATTN_MODEL_WORDPIECE_H
#define ATTN_MODEL_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#define WORDPIECE_MAX_WORD 100 /* code points; longer words are [UNK] */

typedef struct wordpiece wordpiece;

/* Reads vocab.txt (one token a line, the line number its id; '\n' or
 * "\r\n" line ends; a token listed twice keeps its last id). It must hold
 * [UNK], [CLS] and [SEP]. 0, or -1 with a one-line reason in err. */
int wordpiece_load(const char *path, wordpiece **out, char *err,
                   size_t err_size);
/* The same from n bytes in memory (copied). */
int wordpiece_from_memory(const char *text, size_t n, wordpiece **out,
                          char *err, size_t err_size);
/* Accepts NULL. */
void wordpiece_free(wordpiece *wp);

/* Tokenizes n bytes of UTF-8 into [CLS] pieces... [SEP]. max_tokens: 0
 * for no limit, else at least 2: the pieces are cut after the first
 * max_tokens - 2 (the reference's truncation of a single text). *ids
 * (malloc'd, the caller frees) and *count; 0, or -1 (out of memory). */
int wordpiece_encode(const wordpiece *wp, const char *text, size_t n,
                     int64_t max_tokens, int32_t **ids, int64_t *count,
                     char *err, size_t err_size);

/* The text of token id ("[CLS]", "fox", "##es"), or NULL out of range. */
const char *wordpiece_token(const wordpiece *wp, int32_t id);
int64_t wordpiece_vocab_size(const wordpiece *wp);
/* Id of a token, or -1. */
int32_t wordpiece_id(const wordpiece *wp, const char *token);

#endif
