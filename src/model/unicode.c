/* unicode.c - see unicode.h; the tables are unicode_cat.c, unicode_lower.c
 * and unicode_nfd.c. */
#include "unicode.h"

#include "unicode_tables.h"

const char *uc_version(void) { return uc_unicode_version; }

uc_category uc_category_of(uint32_t cp) {
  if (cp > 0x10FFFF)
    return UC_CN;
  int lo = 0, hi = uc_cat_runs - 1; /* last run whose first <= cp */
  while (lo < hi) {
    int mid = lo + (hi - lo + 1) / 2;
    if (uc_cat_first[mid] <= cp)
      lo = mid;
    else
      hi = mid - 1;
  }
  return (uc_category)uc_cat_value[lo];
}

int uc_is_letter(uint32_t cp) { return uc_category_of(cp) <= UC_LO; }

int uc_is_number(uint32_t cp) {
  uc_category c = uc_category_of(cp);
  return c >= UC_ND && c <= UC_NO;
}

int uc_is_mark(uint32_t cp) {
  uc_category c = uc_category_of(cp);
  return c >= UC_MN && c <= UC_ME;
}

int uc_is_punct(uint32_t cp) {
  uc_category c = uc_category_of(cp);
  return c >= UC_PC && c <= UC_PO;
}

int uc_is_symbol(uint32_t cp) {
  uc_category c = uc_category_of(cp);
  return c >= UC_SM && c <= UC_SO;
}

int uc_is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* The entry of a sorted map for cp, or NULL. */
static const uc_map *find(const uc_map *map, int count, uint32_t cp) {
  int lo = 0, hi = count - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    if (map[mid].cp == cp)
      return &map[mid];
    if (map[mid].cp < cp)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

size_t uc_lower(uint32_t cp, uint32_t out[UC_MAX_LOWER]) {
  const uc_map *m = find(uc_lower_map, uc_lower_count, cp);
  if (!m) {
    out[0] = cp;
    return 1;
  }
  for (int i = 0; i < m->n; i++)
    out[i] = m->to[i];
  return m->n;
}

size_t uc_nfd(uint32_t cp, uint32_t out[UC_MAX_NFD]) {
  /* Hangul syllables: arithmetic (Unicode 3.12) */
  const uint32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161,
                 t_base = 0x11A7, t_count = 28, n_count = 588;
  if (cp >= s_base && cp < s_base + 11172) {
    uint32_t s = cp - s_base;
    out[0] = l_base + s / n_count;
    out[1] = v_base + (s % n_count) / t_count;
    if (s % t_count == 0)
      return 2;
    out[2] = t_base + s % t_count;
    return 3;
  }
  const uc_map *m = find(uc_nfd_map, uc_nfd_count, cp);
  if (!m) {
    out[0] = cp;
    return 1;
  }
  for (int i = 0; i < m->n; i++)
    out[i] = m->to[i];
  return m->n;
}

size_t utf8_decode(const char *s, size_t n, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  *cp = 0xFFFD;
  if (n == 0)
    return 0;
  if (u[0] < 0x80) {
    *cp = u[0];
    return 1;
  }
  size_t len;
  uint32_t c, min;
  if (u[0] >= 0xC2 && u[0] <= 0xDF) {
    len = 2, c = u[0] & 0x1F, min = 0x80;
  } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
    len = 3, c = u[0] & 0x0F, min = 0x800;
  } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
    len = 4, c = u[0] & 0x07, min = 0x10000;
  } else {
    return 1; /* continuation byte, 0xC0/0xC1 or 0xF5-0xFF */
  }
  if (n < len)
    return 1;
  for (size_t i = 1; i < len; i++) {
    if ((u[i] & 0xC0) != 0x80)
      return 1;
    c = (c << 6) | (u[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 1;
  *cp = c;
  return len;
}

size_t utf8_encode(uint32_t cp, char out[4]) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    cp = 0xFFFD;
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}
