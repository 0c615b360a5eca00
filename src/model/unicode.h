/*
 * unicode.h - the Unicode facts the tokenizers need: UTF-8 decoding and
 * encoding, general categories, full lowercase mappings and canonical
 * decomposition (NFD). The tables (unicode_cat.c, unicode_lower.c,
 * unicode_nfd.c: one table a file) are generated from Python's unicodedata
 * by scripts/gen_unicode.py; uc_unicode_version names their Unicode
 * version.
 */
#ifndef ATTN_MODEL_UNICODE_H
#define ATTN_MODEL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

typedef enum uc_category {
  UC_LU,
  UC_LL,
  UC_LT,
  UC_LM,
  UC_LO, /* letters                          */
  UC_MN,
  UC_MC,
  UC_ME, /* marks (Mn: nonspacing, accents)  */
  UC_ND,
  UC_NL,
  UC_NO, /* numbers                          */
  UC_PC,
  UC_PD,
  UC_PS,
  UC_PE,
  UC_PI,
  UC_PF,
  UC_PO, /* punctuation        */
  UC_SM,
  UC_SC,
  UC_SK,
  UC_SO, /* symbols                          */
  UC_ZS,
  UC_ZL,
  UC_ZP, /* separators                       */
  UC_CC,
  UC_CF,
  UC_CS,
  UC_CO,
  UC_CN /* control, format, surrogate,
           private use, unassigned          */
} uc_category;

#define UC_MAX_LOWER 3 /* code points one lowercase mapping can produce */
#define UC_MAX_NFD 4   /* code points one decomposition can produce     */

/* The Unicode version of the tables ("14.0.0"). */
const char *uc_version(void);

/* Category of cp; UC_CN for anything above U+10FFFF. */
uc_category uc_category_of(uint32_t cp);
int uc_is_letter(uint32_t cp); /* \p{L} */
int uc_is_number(uint32_t cp); /* \p{N} */
int uc_is_mark(uint32_t cp);   /* \p{M} */
int uc_is_punct(uint32_t cp);  /* \p{P} */
int uc_is_symbol(uint32_t cp); /* \p{S} */
/* The White_Space property (what \s matches in Unicode regular
 * expressions): U+0009-000D, U+0020, U+0085, U+00A0, U+1680,
 * U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
int uc_is_white_space(uint32_t cp);

/* Full lowercase mapping of one code point (context-free, as Rust's
 * char::to_lowercase and Python's str.lower on one character): writes 1 to
 * UC_MAX_LOWER code points to out and returns how many. */
size_t uc_lower(uint32_t cp, uint32_t out[UC_MAX_LOWER]);

/* Full canonical decomposition (NFD of one code point, Hangul syllables
 * included; the marks come out in canonical order): writes 1 to UC_MAX_NFD
 * code points and returns how many. Canonical reordering across code
 * points is not done (the tokenizers only drop or keep marks). */
size_t uc_nfd(uint32_t cp, uint32_t out[UC_MAX_NFD]);

/* Decodes one code point from s (n > 0 bytes available): returns the bytes
 * it used (1-4) and stores the code point; a malformed, overlong,
 * surrogate or truncated sequence gives U+FFFD and uses 1 byte. */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encodes cp (U+FFFD for a surrogate or anything above U+10FFFF) into out
 * and returns the bytes written (1-4). */
size_t utf8_encode(uint32_t cp, char out[4]);

#endif
