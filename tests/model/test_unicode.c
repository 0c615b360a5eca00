/*
 * test_unicode.c - src/model/unicode.c: UTF-8 round trips for every code
 * point, malformed sequences, and categories, lowercase and NFD facts
 * checked by hand against the Unicode Character Database.
 */
#include "unicode.h"

#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL: %s\n", what);
  }
}

static void utf8_round_trips(void) {
  int bad = 0;
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF)
      continue;
    char b[4];
    size_t n = utf8_encode(cp, b);
    uint32_t back = 0;
    size_t m = utf8_decode(b, n, &back);
    size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n != want || m != n || back != cp)
      bad++;
  }
  check(bad == 0, "every scalar value encodes and decodes to itself");
}

static void malformed(void) {
  static const struct {
    const char *bytes;
    size_t n;
  } cases[] = {
      {"\x80", 1},             /* lone continuation       */
      {"\xC0\xAF", 2},         /* overlong '/'            */
      {"\xC1\xBF", 2},         /* overlong                */
      {"\xE0\x80\xAF", 3},     /* overlong, 3 bytes       */
      {"\xED\xA0\x80", 3},     /* surrogate U+D800        */
      {"\xF4\x90\x80\x80", 4}, /* above U+10FFFF          */
      {"\xF5\x80\x80\x80", 4}, /* invalid lead            */
      {"\xE2\x82", 2},         /* truncated '€'           */
      {"\xE2\x28\xA1", 3},     /* bad continuation        */
      {"\xFF", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t cp = 0;
    size_t used = utf8_decode(cases[i].bytes, cases[i].n, &cp);
    char what[64];
    snprintf(what, sizeof what, "malformed case %zu gives U+FFFD, 1 byte", i);
    check(used == 1 && cp == 0xFFFD, what);
  }
  char b[4];
  check(utf8_encode(0xD800, b) == 3 && memcmp(b, "\xEF\xBF\xBD", 3) == 0,
        "a surrogate encodes as U+FFFD");
  check(utf8_encode(0x110000, b) == 3, "above U+10FFFF encodes as U+FFFD");
}

static void categories(void) {
  check(uc_category_of('A') == UC_LU && uc_category_of('z') == UC_LL,
        "ASCII letters");
  check(uc_category_of(0x4E2D) == UC_LO, "U+4E2D (CJK) is Lo");
  check(uc_category_of(0x0663) == UC_ND && uc_is_number(0x0663),
        "U+0663 ARABIC-INDIC DIGIT THREE is Nd");
  check(uc_category_of(0x00BD) == UC_NO, "U+00BD VULGAR FRACTION is No");
  check(uc_category_of(0x0301) == UC_MN && uc_is_mark(0x0301),
        "U+0301 COMBINING ACUTE is Mn");
  check(uc_is_punct('!') && uc_is_punct(0x3002) && !uc_is_punct('$'),
        "punctuation: '!' and U+3002 yes, '$' (Sc) no");
  check(uc_category_of('$') == UC_SC && uc_is_symbol('$'), "'$' is Sc");
  check(uc_category_of(0x1F600) == UC_SO, "U+1F600 (emoji) is So");
  check(uc_category_of(0x00A0) == UC_ZS, "U+00A0 is Zs");
  check(uc_category_of(0x200B) == UC_CF, "U+200B ZERO WIDTH SPACE is Cf");
  check(uc_category_of('\t') == UC_CC, "TAB is Cc");
  check(uc_category_of(0xE000) == UC_CO, "U+E000 is Co");
  check(uc_category_of(0x0378) == UC_CN, "U+0378 is unassigned");
  check(uc_category_of(0x10FFFF) == UC_CN && uc_category_of(0x110000) == UC_CN,
        "U+10FFFF and beyond are Cn");
  check(uc_is_white_space(0x3000) && uc_is_white_space(0x85) &&
            !uc_is_white_space(0x200B) && !uc_is_white_space(0x1C),
        "White_Space: U+3000, U+0085 yes; U+200B, U+001C no");
  check(strcmp(uc_version(), "") != 0, "the tables name their version");
}

static void mappings(void) {
  uint32_t o[UC_MAX_NFD];
  check(uc_lower('A', o) == 1 && o[0] == 'a', "lower A = a");
  check(uc_lower(0x00C4, o) == 1 && o[0] == 0x00E4, "lower Ä = ä");
  check(uc_lower(0x0130, o) == 2 && o[0] == 'i' && o[1] == 0x0307,
        "lower U+0130 = i + U+0307 (full mapping)");
  check(uc_lower(0x03A3, o) == 1 && o[0] == 0x03C3, "lower Σ = σ");
  check(uc_lower('a', o) == 1 && o[0] == 'a', "lower a = a");
  check(uc_nfd(0x00E9, o) == 2 && o[0] == 'e' && o[1] == 0x0301,
        "NFD é = e + U+0301");
  check(uc_nfd(0x1E09, o) == 3 && o[0] == 'c' && o[1] == 0x0327 &&
            o[2] == 0x0301,
        "NFD U+1E09 = c + cedilla + acute");
  check(uc_nfd(0xAC00, o) == 2 && o[0] == 0x1100 && o[1] == 0x1161,
        "NFD 가 = U+1100 U+1161");
  check(uc_nfd(0xD7A3, o) == 3 && o[2] == 0x11C2, "NFD U+D7A3 has a T jamo");
  check(uc_nfd('x', o) == 1 && o[0] == 'x', "NFD x = x");
}

int main(void) {
  utf8_round_trips();
  malformed();
  categories();
  mappings();
  printf("unicode (Unicode %s): %d passed, %d failed\n", uc_version(), passed,
         failed);
  return failed != 0;
}
