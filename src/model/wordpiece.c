/*
 * wordpiece.c - BERT's WordPiece tokenizer (wordpiece.h): the vocabulary
 * in an open-addressing hash table, the normaliser as one pass over code
 * points, then words and greedy longest-match pieces.
 */
#include "wordpiece.h"

#include "unicode.h"
#include "wordpiece_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VOCAB_MAX_BYTES ((size_t)256 << 20)

struct wordpiece {
  char *text;     /* the file, lines NUL-terminated                */
  char **tokens;  /* (n) token id -> its text                      */
  size_t *lens;   /* (n) bytes of each token                       */
  int64_t n;      /* tokens                                        */
  int32_t *slots; /* (cap) hash table of ids, -1 = empty           */
  uint64_t cap;   /* a power of two >= 2 n                         */
  int32_t unk, cls, sep;
  int32_t special[5]; /* ids of [PAD] [UNK] [CLS] [SEP] [MASK], or -1 */
};

static const char *const special_names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                             "[MASK]"};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(char *err, size_t err_size, const char *fmt, ...) {
  if (err && err_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    for (char *c = err; *c; c++)
      if ((unsigned char)*c < 0x20)
        *c = '?';
  }
  return -1;
}

static uint64_t hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static int32_t lookup(const wordpiece *wp, const char *s, size_t n) {
  for (uint64_t i = hash(s, n) & (wp->cap - 1);; i = (i + 1) & (wp->cap - 1)) {
    int32_t id = wp->slots[i];
    if (id < 0)
      return -1;
    if (wp->lens[id] == n && memcmp(wp->tokens[id], s, n) == 0)
      return id;
  }
}

int32_t wordpiece_id(const wordpiece *wp, const char *token) {
  return lookup(wp, token, strlen(token));
}

void wordpiece_free(wordpiece *wp) {
  if (!wp)
    return;
  free(wp->text);
  free(wp->tokens);
  free(wp->lens);
  free(wp->slots);
  free(wp);
}

/* Splits wp->text (n bytes, NUL appended) into lines and hashes them. */
static int build(wordpiece *wp, size_t n, char *err, size_t es) {
  int64_t lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += wp->text[i] == '\n';
  if (n > 0 && wp->text[n - 1] != '\n')
    lines++; /* a last line without its newline */
  if (lines == 0)
    return fail(err, es, "empty vocabulary");
  if (lines > INT32_MAX / 2)
    return fail(err, es, "too many tokens (%lld)", (long long)lines);
  uint64_t cap = 64;
  while (cap < 2 * (uint64_t)lines)
    cap *= 2;
  wp->tokens = malloc((size_t)lines * sizeof *wp->tokens);
  wp->lens = malloc((size_t)lines * sizeof *wp->lens);
  wp->slots = malloc((size_t)cap * sizeof *wp->slots);
  if (!wp->tokens || !wp->lens || !wp->slots)
    return fail(err, es, "out of memory for %lld tokens", (long long)lines);
  memset(wp->slots, 0xff, (size_t)cap * sizeof *wp->slots);
  wp->cap = cap;
  char *s = wp->text;
  for (int64_t id = 0; id < lines; id++) {
    char *e = memchr(s, '\n', (size_t)(wp->text + n - s));
    if (!e)
      e = wp->text + n; /* the NUL appended */
    *e = 0;
    size_t len = (size_t)(e - s);
    if (len > 0 && s[len - 1] == '\r')
      s[--len] = 0;
    wp->tokens[id] = s;
    wp->lens[id] = len;
    wp->n = id + 1;
    uint64_t i = hash(s, len) & (cap - 1);
    for (;; i = (i + 1) & (cap - 1)) {
      int32_t o = wp->slots[i];
      if (o < 0 || (wp->lens[o] == len && memcmp(wp->tokens[o], s, len) == 0))
        break;
    }
    wp->slots[i] = (int32_t)id; /* a repeated token keeps its last id */
    s = e + 1;
  }
  for (int k = 0; k < 5; k++)
    wp->special[k] = wordpiece_id(wp, special_names[k]);
  wp->unk = wp->special[1];
  wp->cls = wp->special[2];
  wp->sep = wp->special[3];
  if (wp->unk < 0 || wp->cls < 0 || wp->sep < 0)
    return fail(err, es, "the vocabulary lacks %s",
                wp->unk < 0   ? "[UNK]"
                : wp->cls < 0 ? "[CLS]"
                              : "[SEP]");
  return 0;
}

int wordpiece_from_memory(const char *text, size_t n, wordpiece **out,
                          char *err, size_t err_size) {
  *out = NULL;
  if (n > VOCAB_MAX_BYTES)
    return fail(err, err_size, "vocabulary of %zu bytes is over the limit", n);
  wordpiece *wp = calloc(1, sizeof *wp);
  if (!wp || !(wp->text = malloc(n + 1))) {
    free(wp);
    return fail(err, err_size, "out of memory");
  }
  if (n)
    memcpy(wp->text, text, n);
  wp->text[n] = 0;
  if (build(wp, n, err, err_size) != 0) {
    wordpiece_free(wp);
    return -1;
  }
  *out = wp;
  return 0;
}

int wordpiece_load(const char *path, wordpiece **out, char *err,
                   size_t err_size) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return fail(err, err_size, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail(err, err_size, "%s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > VOCAB_MAX_BYTES) {
    close(fd);
    return fail(err, err_size, "%s: %lld bytes is over the limit", path,
                (long long)st.st_size);
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *buf = malloc(n ? n : 1);
  if (!buf) {
    close(fd);
    return fail(err, err_size, "%s: out of memory", path);
  }
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  char why[200];
  int rc = got == n ? wordpiece_from_memory(buf, n, out, why, sizeof why) : -1;
  if (got != n)
    snprintf(why, sizeof why, "read %zu of %zu bytes", got, n);
  free(buf);
  if (rc != 0)
    return fail(err, err_size, "%s: %s", path, why);
  return 0;
}

const char *wordpiece_token(const wordpiece *wp, int32_t id) {
  return id >= 0 && id < wp->n ? wp->tokens[id] : NULL;
}

int64_t wordpiece_vocab_size(const wordpiece *wp) { return wp->n; }

/* ---------------------------------------------------------------------- */
/* Character classes (the reference's, see wordpiece.h)                   */
/* ---------------------------------------------------------------------- */
static int in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < r[mid][0])
      hi = mid - 1;
    else if (cp > r[mid][1])
      lo = mid + 1;
    else
      return 1;
  }
  return 0;
}

static int is_control(uint32_t c) {
  if (c == '\t' || c == '\n' || c == '\r')
    return 0;
  uc_category k = uc_category_of(c);
  int ctl = k == UC_CC || k == UC_CF || k == UC_CO || k == UC_CS;
  return ctl ^ in_ranges(wp_flip_control, wp_flip_control_count, c);
}

static int is_mark(uint32_t c) {
  int mn = uc_category_of(c) == UC_MN;
  return mn ^ in_ranges(wp_flip_mark, wp_flip_mark_count, c);
}

static int is_punct(uint32_t c) {
  int p = (c >= 33 && c <= 47) || (c >= 58 && c <= 64) ||
          (c >= 91 && c <= 96) || (c >= 123 && c <= 126) || uc_is_punct(c);
  return p ^ in_ranges(wp_flip_punct, wp_flip_punct_count, c);
}

static int is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B81F) ||
         (c >= 0x2B920 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) ||
         (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---------------------------------------------------------------------- */
/* Encoding                                                               */
/* ---------------------------------------------------------------------- */
typedef struct vec {
  void *p;
  int64_t n, cap;
  size_t elem;
} vec;

static int vec_push(vec *v, const void *x) {
  if (v->n == v->cap) {
    int64_t cap = v->cap ? v->cap * 2 : 256;
    void *np = realloc(v->p, (size_t)cap * v->elem);
    if (!np)
      return -1;
    v->p = np;
    v->cap = cap;
  }
  memcpy((char *)v->p + (size_t)v->n * v->elem, x, v->elem);
  v->n++;
  return 0;
}

static int push_cp(vec *v, uint32_t c) { return vec_push(v, &c); }

/* Steps 2-4 on text[0, n): normalised code points appended to cps. */
static int normalise(const char *text, size_t n, vec *cps) {
  for (size_t i = 0; i < n;) {
    uint32_t c;
    i += utf8_decode(text + i, n - i, &c);
    if (c == 0 || c == 0xFFFD || is_control(c))
      continue;
    if (c == '\t' || c == '\n' || c == '\r' || uc_is_white_space(c))
      c = ' ';
    int cjk = is_cjk(c);
    if (cjk && push_cp(cps, ' ') != 0)
      return -1;
    uint32_t d[UC_MAX_NFD];
    size_t nd = uc_nfd(c, d);
    for (size_t k = 0; k < nd; k++) {
      if (is_mark(d[k]))
        continue;
      uint32_t l[UC_MAX_LOWER];
      size_t nl = uc_lower(d[k], l);
      for (size_t m = 0; m < nl; m++)
        if (push_cp(cps, l[m]) != 0)
          return -1;
    }
    if (cjk && push_cp(cps, ' ') != 0)
      return -1;
  }
  return 0;
}

/* Step 6 on one word (w[0, n) code points): its piece ids onto ids. */
static int word_pieces(const wordpiece *wp, const uint32_t *w, int64_t n,
                       vec *ids) {
  if (n > WORDPIECE_MAX_WORD)
    return vec_push(ids, &wp->unk);
  /* UTF-8 of the word with the byte offset of each code point: piece
   * [start, end) is utf + off[start] .. off[end]; a continuation (start >
   * 0) is looked up as "##" followed by the same bytes (cont) */
  size_t off[WORDPIECE_MAX_WORD + 1];
  char utf[4 * WORDPIECE_MAX_WORD], cont[2 + 4 * WORDPIECE_MAX_WORD];
  size_t len = 0;
  for (int64_t k = 0; k < n; k++) {
    off[k] = len;
    len += utf8_encode(w[k], utf + len);
  }
  off[n] = len;
  cont[0] = cont[1] = '#';
  const int64_t mark = ids->n;
  for (int64_t start = 0; start < n;) {
    int32_t found = -1;
    int64_t end = n;
    if (start > 0)
      memcpy(cont + 2, utf + off[start], len - off[start]);
    for (; end > start; end--) {
      const size_t bytes = off[end] - off[start];
      found = start > 0 ? lookup(wp, cont, 2 + bytes) : lookup(wp, utf, bytes);
      if (found >= 0)
        break;
    }
    if (found < 0) { /* an unmatchable part: the whole word is [UNK] */
      ids->n = mark;
      return vec_push(ids, &wp->unk);
    }
    if (vec_push(ids, &found) != 0)
      return -1;
    start = end;
  }
  return 0;
}

/* Steps 2-6 on a stretch of text without special tokens. */
static int encode_plain(const wordpiece *wp, const char *text, size_t n,
                        vec *ids, vec *cps) {
  cps->n = 0;
  if (normalise(text, n, cps) != 0)
    return -1;
  const uint32_t *c = cps->p;
  int64_t w0 = 0;
  for (int64_t i = 0; i <= cps->n; i++) {
    const int end = i == cps->n;
    const int ws = !end && uc_is_white_space(c[i]);
    const int pu = !end && !ws && is_punct(c[i]);
    if (end || ws || pu) {
      if (i > w0 && word_pieces(wp, c + w0, i - w0, ids) != 0)
        return -1;
      if (pu && word_pieces(wp, c + i, 1, ids) != 0)
        return -1;
      w0 = i + 1;
    }
  }
  return 0;
}

/* The special token starting at s (n bytes left): its index, or -1; the
 * longest one wins (the reference matches leftmost-longest). */
static int special_at(const wordpiece *wp, const char *s, size_t n,
                      size_t *len) {
  int best = -1;
  *len = 0;
  for (int k = 0; k < 5; k++) {
    size_t l = strlen(special_names[k]);
    if (wp->special[k] >= 0 && l <= n && l > *len &&
        memcmp(s, special_names[k], l) == 0) {
      best = k;
      *len = l;
    }
  }
  return best;
}

int wordpiece_encode(const wordpiece *wp, const char *text, size_t n,
                     int64_t max_tokens, int32_t **ids_out, int64_t *count,
                     char *err, size_t err_size) {
  vec ids = {NULL, 0, 0, sizeof(int32_t)};
  vec cps = {NULL, 0, 0, sizeof(uint32_t)};
  *ids_out = NULL;
  *count = 0;
  if (max_tokens != 0 && max_tokens < 2)
    return fail(err, err_size, "max_tokens (%lld) must be 0 or >= 2",
                (long long)max_tokens);
  int rc = vec_push(&ids, &wp->cls);
  size_t seg = 0;
  for (size_t i = 0; rc == 0 && i <= n;) {
    size_t len = 0;
    int k =
        i < n && text[i] == '[' ? special_at(wp, text + i, n - i, &len) : -1;
    if (i == n || k >= 0) {
      rc = encode_plain(wp, text + seg, i - seg, &ids, &cps);
      if (rc == 0 && k >= 0)
        rc = vec_push(&ids, &wp->special[k]);
      if (i == n)
        break;
      i += len;
      seg = i;
    } else {
      i++;
    }
  }
  free(cps.p);
  if (rc == 0 && max_tokens > 0 && ids.n + 1 > max_tokens)
    ids.n = max_tokens - 1;
  if (rc == 0)
    rc = vec_push(&ids, &wp->sep);
  if (rc != 0) {
    free(ids.p);
    return fail(err, err_size, "out of memory while tokenizing");
  }
  *ids_out = ids.p;
  *count = ids.n;
  return 0;
}
