/* unicode_tables.h - the generated tables behind unicode.c (internal). */
#ifndef ATTN_MODEL_UNICODE_TABLES_H
#define ATTN_MODEL_UNICODE_TABLES_H

#include <stdint.h>

typedef struct uc_map {
  uint32_t cp;    /* the code point mapped                  */
  uint8_t n;      /* how many code points it maps to (1-4) */
  uint32_t to[4]; /* those code points                     */
} uc_map;

extern const char uc_unicode_version[];
extern const int uc_cat_runs;
extern const uint32_t uc_cat_first[]; /* first code point of each run  */
extern const uint8_t uc_cat_value[];  /* uc_category of each run       */
extern const int uc_lower_count;
extern const uc_map uc_lower_map[]; /* sorted by cp; full lowercase  */
extern const int uc_nfd_count;
extern const uc_map uc_nfd_map[]; /* sorted by cp; NFD (no Hangul) */

#endif
