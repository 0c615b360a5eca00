/* bpe.c - byte-level BPE (see bpe.h). */
#include "bpe.h"

#include "unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hash tables (open addressing, power-of-two sizes) ------------------ */

typedef struct str_slot {
  uint64_t hash;
  int32_t id; /* -1: empty */
} str_slot;

typedef struct pair_slot {
  uint64_t key;   /* (left << 32) | right, or UINT64_MAX when empty */
  int32_t rank;   /* merge rank: lower merges first               */
  int32_t result; /* the merged token                             */
} pair_slot;

typedef struct special {
  char *text; /* spelling in the GGUF, owned (matched in raw text) */
  size_t len;
  int32_t id;
} special;

struct bpe {
  int64_t n_tokens;
  char **bytes;   /* (n_tokens) what each token stands for       */
  size_t *blen;   /* (n_tokens)                                  */
  uint8_t *is_sp; /* (n_tokens) special (control / user-defined) */
  str_slot *str;  /* token bytes -> id                           */
  size_t str_mask;
  pair_slot *pair; /* (left, right) -> (rank, result)           */
  size_t pair_mask;
  int32_t byte_id[256]; /* token of each single byte             */
  special *sp;          /* (n_sp) longest first                  */
  int64_t n_sp;
  uint8_t sp_first[256]; /* 1: some special token starts with this byte */
  bpe_pre pre;
};

static void fail(char *err, size_t es, const char *fmt, ...) {
  if (!err || es == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, es, fmt, ap);
  va_end(ap);
}

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static size_t pow2_above(int64_t n) {
  size_t s = 16;
  while (s < (size_t)n * 2)
    s <<= 1;
  return s;
}

static int32_t str_find(const bpe *b, const char *s, size_t n) {
  uint64_t h = fnv(s, n);
  for (size_t i = h & b->str_mask;; i = (i + 1) & b->str_mask) {
    const str_slot *e = &b->str[i];
    if (e->id < 0)
      return -1;
    if (e->hash == h && b->blen[e->id] == n &&
        memcmp(b->bytes[e->id], s, n) == 0)
      return e->id;
  }
}

/* Later ids win over earlier ones with the same bytes (a Python dict built
 * in order, like Hugging Face's vocabulary). */
static void str_put(bpe *b, int32_t id) {
  const char *s = b->bytes[id];
  size_t n = b->blen[id];
  uint64_t h = fnv(s, n);
  for (size_t i = h & b->str_mask;; i = (i + 1) & b->str_mask) {
    str_slot *e = &b->str[i];
    if (e->id < 0 || (e->hash == h && b->blen[e->id] == n &&
                      memcmp(b->bytes[e->id], s, n) == 0)) {
      e->hash = h;
      e->id = id;
      return;
    }
  }
}

static const pair_slot *pair_find(const bpe *b, int32_t l, int32_t r) {
  uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
  for (size_t i = mix(key) & b->pair_mask;; i = (i + 1) & b->pair_mask) {
    const pair_slot *e = &b->pair[i];
    if (e->key == UINT64_MAX)
      return NULL;
    if (e->key == key)
      return e;
  }
}

/* A later duplicate of a merge replaces the earlier rank (Hugging Face
 * collects its merges into a map in order). */
static void pair_put(bpe *b, int32_t l, int32_t r, int32_t rank,
                     int32_t result) {
  uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
  for (size_t i = mix(key) & b->pair_mask;; i = (i + 1) & b->pair_mask) {
    pair_slot *e = &b->pair[i];
    if (e->key == key || e->key == UINT64_MAX) {
      e->key = key;
      e->rank = rank;
      e->result = result;
      return;
    }
  }
}

/* ---- GPT-2's byte <-> unicode alphabet ---------------------------------- */

static int byte_is_self(int c) {
  return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) ||
         (c >= 174 && c <= 255);
}

/* code point -> byte, -1 when cp is not in the alphabet */
static int unicode_to_byte(uint32_t cp) {
  if (cp < 256 && byte_is_self((int)cp))
    return (int)cp;
  if (cp >= 256 && cp < 256 + 68) {
    int k = (int)cp - 256, n = 0;
    for (int c = 0; c < 256; c++)
      if (!byte_is_self(c) && n++ == k)
        return c;
  }
  return -1;
}

/* Spelling -> bytes: every character in the alphabet gives its byte; a
 * spelling with any other character stands for its own UTF-8 (Hugging
 * Face's byte_level_tokenizer). *out is malloc'd. */
static int spelling_bytes(gguf_str t, char **out, size_t *n, int *in_alpha) {
  char *o = malloc(t.len + 1);
  if (!o)
    return -1;
  size_t k = 0, i = 0;
  *in_alpha = 1;
  while (i < t.len) {
    uint32_t cp;
    i += utf8_decode(t.s + i, t.len - i, &cp);
    int by = unicode_to_byte(cp);
    if (by < 0) {
      *in_alpha = 0;
      break;
    }
    o[k++] = (char)by;
  }
  if (!*in_alpha) {
    memcpy(o, t.s, t.len);
    k = t.len;
  }
  o[k] = 0;
  *out = o;
  *n = k;
  return 0;
}

/* ---- building ----------------------------------------------------------- */

void bpe_free(bpe *b) {
  if (!b)
    return;
  if (b->bytes)
    for (int64_t i = 0; i < b->n_tokens; i++)
      free(b->bytes[i]);
  free(b->bytes);
  free(b->blen);
  free(b->is_sp);
  free(b->str);
  free(b->pair);
  if (b->sp)
    for (int64_t i = 0; i < b->n_sp; i++)
      free(b->sp[i].text);
  free(b->sp);
  free(b);
}

static int cmp_special(const void *x, const void *y) {
  const special *a = x, *c = y;
  if (a->len != c->len)
    return a->len > c->len ? -1 : 1;
  return a->id < c->id ? -1 : a->id > c->id;
}

static int add_merges(bpe *b, const gguf_str *merges, int64_t n_merges,
                      char *err, size_t es) {
  for (int64_t r = 0; r < n_merges; r++) {
    gguf_str m = merges[r];
    const char *sp = memchr(m.s, ' ', m.len);
    if (!sp || sp == m.s || sp == m.s + m.len - 1 ||
        memchr(sp + 1, ' ', m.len - (size_t)(sp + 1 - m.s))) {
      fail(err, es, "merge %lld is not two tokens separated by one space",
           (long long)r);
      return -1;
    }
    gguf_str parts[3] = {{m.s, (size_t)(sp - m.s)},
                         {sp + 1, m.len - (size_t)(sp + 1 - m.s)},
                         {m.s, m.len - 1}};
    char *joined = malloc(m.len);
    if (!joined) {
      fail(err, es, "out of memory");
      return -1;
    }
    memcpy(joined, parts[0].s, parts[0].len);
    memcpy(joined + parts[0].len, parts[1].s, parts[1].len);
    parts[2].s = joined;
    int32_t id[3];
    for (int k = 0; k < 3; k++) {
      char *by;
      size_t n;
      int alpha;
      if (spelling_bytes(parts[k], &by, &n, &alpha)) {
        free(joined);
        fail(err, es, "out of memory");
        return -1;
      }
      id[k] = str_find(b, by, n);
      free(by);
      if (id[k] < 0) {
        free(joined);
        fail(err, es, "merge %lld: %s is not a token", (long long)r,
             k == 2   ? "its result"
             : k == 0 ? "its left part"
                      : "its right part");
        return -1;
      }
    }
    free(joined);
    pair_put(b, id[0], id[1], (int32_t)r, id[2]);
  }
  return 0;
}

int bpe_build(const gguf_str *tokens, int64_t n_tokens, const gguf_str *merges,
              int64_t n_merges, const int32_t *types, bpe_pre pre, bpe **out,
              char *err, size_t es) {
  *out = NULL;
  if (n_tokens <= 0 || n_tokens > INT32_MAX / 2 || n_merges < 0 ||
      n_merges > INT32_MAX) {
    fail(err, es, "bad vocabulary size %lld or merge count %lld",
         (long long)n_tokens, (long long)n_merges);
    return -1;
  }
  bpe *b = calloc(1, sizeof *b);
  if (!b) {
    fail(err, es, "out of memory");
    return -1;
  }
  b->pre = pre;
  size_t n = (size_t)n_tokens;
  b->bytes = calloc(n, sizeof *b->bytes);
  b->blen = calloc(n, sizeof *b->blen);
  b->is_sp = calloc(n, 1);
  b->sp = calloc(n, sizeof *b->sp);
  size_t ss = pow2_above(n_tokens), ps = pow2_above(n_merges);
  b->str = malloc(ss * sizeof *b->str);
  b->pair = malloc(ps * sizeof *b->pair);
  if (!b->bytes || !b->blen || !b->is_sp || !b->sp || !b->str || !b->pair) {
    bpe_free(b);
    fail(err, es, "out of memory");
    return -1;
  }
  b->n_tokens = n_tokens;
  b->str_mask = ss - 1;
  b->pair_mask = ps - 1;
  for (size_t i = 0; i < ss; i++)
    b->str[i].id = -1;
  for (size_t i = 0; i < ps; i++)
    b->pair[i].key = UINT64_MAX;
  for (int64_t i = 0; i < n_tokens; i++) {
    int alpha;
    if (spelling_bytes(tokens[i], &b->bytes[i], &b->blen[i], &alpha)) {
      bpe_free(b);
      fail(err, es, "out of memory");
      return -1;
    }
    int32_t ty = types ? types[i] : 1;
    /* CONTROL tokens spelled outside the byte alphabet are llama.cpp
     * mislabels that Hugging Face does not add (gguf_tokenizer_mapping) */
    if ((ty == 3 && alpha) || ty == 4) {
      if (tokens[i].len > 0) {
        b->is_sp[i] = 1;
        char *copy = malloc(tokens[i].len);
        if (!copy) {
          bpe_free(b);
          fail(err, es, "out of memory");
          return -1;
        }
        memcpy(copy, tokens[i].s, tokens[i].len);
        b->sp[b->n_sp++] = (special){copy, tokens[i].len, (int32_t)i};
        b->sp_first[(unsigned char)tokens[i].s[0]] = 1;
      }
    }
    if (b->blen[i] > 0)
      str_put(b, (int32_t)i);
  }
  qsort(b->sp, (size_t)b->n_sp, sizeof *b->sp, cmp_special);
  for (int c = 0; c < 256; c++) {
    char ch = (char)c;
    b->byte_id[c] = str_find(b, &ch, 1); /* -1: the byte is dropped */
  }
  if (add_merges(b, merges, n_merges, err, es)) {
    bpe_free(b);
    return -1;
  }
  *out = b;
  return 0;
}

int bpe_from_gguf(const gguf_file *f, bpe **out, char *err, size_t es) {
  gguf_str model, pre = {"", 0};
  gguf_str *tokens = NULL, *merges = NULL;
  int32_t *types = NULL;
  uint64_t nt = 0, nm = 0, nty = 0;
  int rc = -1;
  *out = NULL;
  if (gguf_get_string(f, "tokenizer.ggml.model", &model, err, es))
    return -1;
  if (!(model.len == 4 && memcmp(model.s, "gpt2", 4) == 0)) {
    fail(err, es, "tokenizer.ggml.model is not \"gpt2\" (byte-level BPE)");
    return -1;
  }
  if (gguf_find_kv(f, "tokenizer.ggml.pre") &&
      gguf_get_string(f, "tokenizer.ggml.pre", &pre, err, es))
    return -1;
  if (gguf_get_string_array(f, "tokenizer.ggml.tokens", &tokens, &nt, err,
                            es) ||
      gguf_get_string_array(f, "tokenizer.ggml.merges", &merges, &nm, err, es))
    goto done;
  if (gguf_find_kv(f, "tokenizer.ggml.token_type")) {
    if (gguf_get_i32_array(f, "tokenizer.ggml.token_type", &types, &nty, err,
                           es))
      goto done;
    if (nty != nt) {
      fail(err, es,
           "tokenizer.ggml.token_type has %llu entries for %llu "
           "tokens",
           (unsigned long long)nty, (unsigned long long)nt);
      goto done;
    }
  }
  bpe_pre p = pre.len == 6 && memcmp(pre.s, "smollm", 6) == 0 ? BPE_PRE_SMOLLM
                                                              : BPE_PRE_GPT2;
  if (nt > (uint64_t)INT32_MAX || nm > (uint64_t)INT32_MAX) {
    fail(err, es, "too many tokens or merges");
    goto done;
  }
  rc = bpe_build(tokens, (int64_t)nt, merges, (int64_t)nm, types, p, out, err,
                 es);
done:
  free(tokens);
  free(merges);
  free(types);
  return rc;
}

void bpe_set_pre(bpe *b, bpe_pre pre) { b->pre = pre; }
bpe_pre bpe_get_pre(const bpe *b) { return b->pre; }
int64_t bpe_vocab_size(const bpe *b) { return b->n_tokens; }

int bpe_token_bytes(const bpe *b, int32_t id, const char **s, size_t *len) {
  if (id < 0 || id >= b->n_tokens)
    return -1;
  *s = b->bytes[id];
  *len = b->blen[id];
  return 0;
}

int bpe_is_special(const bpe *b, int32_t id) {
  return id >= 0 && id < b->n_tokens && b->is_sp[id];
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct out_ids {
  int32_t *v;
  int64_t n, cap;
  int failed;
} out_ids;

static void emit(out_ids *o, int32_t id) {
  if (o->failed)
    return;
  if (o->n == o->cap) {
    int64_t cap = o->cap ? o->cap * 2 : 64;
    int32_t *v = realloc(o->v, (size_t)cap * sizeof *v);
    if (!v) {
      o->failed = 1;
      return;
    }
    o->v = v;
    o->cap = cap;
  }
  o->v[o->n++] = id;
}

/* A candidate merge of symbols l and r (heap entry). */
typedef struct cand {
  int32_t rank;
  int32_t l, r;     /* symbol indices                 */
  int32_t lid, rid; /* their ids when it was pushed   */
} cand;

static int cand_less(const cand *a, const cand *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->l < b->l;
}

static void heap_push(cand *h, int64_t *n, cand c) {
  int64_t i = (*n)++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (!cand_less(&c, &h[p]))
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, int64_t *n) {
  cand top = h[0], last = h[--(*n)];
  int64_t i = 0;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= *n)
      break;
    if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
      c++;
    if (!cand_less(&h[c], &last))
      break;
    h[i] = h[c];
    i = c;
  }
  if (*n > 0)
    h[i] = last;
  return top;
}

typedef struct work {
  int32_t *id, *prev, *next; /* (n) symbol list */
  cand *heap;                /* (n) candidates  */
  size_t cap;
} work;

static int work_reserve(work *w, size_t n) {
  if (n <= w->cap)
    return 0;
  size_t cap = n < 64 ? 64 : n;
  int32_t *a = realloc(w->id, cap * sizeof *a);
  if (a)
    w->id = a;
  int32_t *p = realloc(w->prev, cap * sizeof *p);
  if (p)
    w->prev = p;
  int32_t *q = realloc(w->next, cap * sizeof *q);
  if (q)
    w->next = q;
  cand *h = realloc(w->heap, 3 * cap * sizeof *h); /* n-1 + 2 per merge */
  if (h)
    w->heap = h;
  if (!a || !p || !q || !h)
    return -1;
  w->cap = cap;
  return 0;
}

static void try_pair(const bpe *b, work *w, int64_t *nh, int32_t l) {
  int32_t r = w->next[l];
  if (l < 0 || r < 0)
    return;
  const pair_slot *m = pair_find(b, w->id[l], w->id[r]);
  if (m)
    heap_push(w->heap, nh, (cand){m->rank, l, r, w->id[l], w->id[r]});
}

/* BPE of one piece (n bytes at s). */
static void encode_piece(const bpe *b, work *w, const char *s, size_t n,
                         out_ids *o) {
  if (n == 0)
    return;
  if (n > INT32_MAX / 2 || work_reserve(w, n)) {
    o->failed = 1;
    return;
  }
  size_t kept = 0; /* bytes without a token are dropped, like Hugging Face's
                   BPE without an unknown token does */
  for (size_t i = 0; i < n; i++)
    if (b->byte_id[(unsigned char)s[i]] >= 0)
      w->id[kept++] = b->byte_id[(unsigned char)s[i]];
  if (kept == 0)
    return;
  n = kept;
  for (size_t i = 0; i < n; i++) {
    w->prev[i] = (int32_t)i - 1;
    w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  }
  int64_t nh = 0; /* at most one live entry per link: n - 1 + merges */
  for (size_t i = 0; i + 1 < n; i++)
    try_pair(b, w, &nh, (int32_t)i);
  while (nh > 0) {
    cand c = heap_pop(w->heap, &nh);
    if (w->id[c.l] != c.lid || w->next[c.l] != c.r || w->id[c.r] != c.rid)
      continue; /* stale */
    const pair_slot *m = pair_find(b, c.lid, c.rid);
    w->id[c.l] = m->result;
    w->id[c.r] = -1;
    int32_t nx = w->next[c.r];
    w->next[c.l] = nx;
    if (nx >= 0)
      w->prev[nx] = c.l;
    if (w->prev[c.l] >= 0)
      try_pair(b, w, &nh, w->prev[c.l]);
    try_pair(b, w, &nh, c.l);
  }
  for (int32_t i = 0; i >= 0; i = w->next[i])
    emit(o, w->id[i]);
}

/* ---- GPT-2's pre-tokenizer regex, by hand ------------------------------- */

static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *len) {
  uint32_t cp;
  *len = utf8_decode(s + i, n - i, &cp);
  return cp;
}

static int is_l(uint32_t c) { return uc_is_letter(c); }
static int is_n(uint32_t c) { return uc_is_number(c); }
static int is_s(uint32_t c) { return uc_is_white_space(c); }
static int is_other(uint32_t c) { return !is_s(c) && !is_l(c) && !is_n(c); }

/* end of the longest run from i of characters in class f */
static size_t run(const char *s, size_t n, size_t i, int (*f)(uint32_t)) {
  while (i < n) {
    size_t k;
    if (!f(cp_at(s, n, i, &k)))
      break;
    i += k;
  }
  return i;
}

/* Length of the regex match at i (n > i). */
static size_t gpt2_match(const char *s, size_t n, size_t i) {
  size_t k;
  uint32_t c = cp_at(s, n, i, &k);
  /* 's|'t|'re|'ve|'m|'ll|'d */
  if (c == '\'' && i + 1 < n) {
    char a = s[i + 1], b2 = i + 2 < n ? s[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
      return 2;
    if ((a == 'r' && b2 == 'e') || (a == 'v' && b2 == 'e') ||
        (a == 'l' && b2 == 'l'))
      return 3;
  }
  /* ' ?' followed by a class: letters, numbers, others */
  size_t j = i;
  uint32_t d = c;
  if (c == ' ' && i + 1 < n) {
    size_t k2;
    d = cp_at(s, n, i + 1, &k2);
    j = i + 1;
  }
  int (*cls[3])(uint32_t) = {is_l, is_n, is_other};
  for (int t = 0; t < 3; t++) {
    if (cls[t](c))
      return run(s, n, i, cls[t]) - i;
    if (j > i && cls[t](d))
      return run(s, n, j, cls[t]) - i;
  }
  /* \s+(?!\S) | \s+ : c is white space here */
  size_t e = run(s, n, i, is_s);
  if (e >= n)
    return e - i;
  /* back off the last white-space character (it precedes a non-space) */
  size_t last = i, p = i;
  while (p < e) {
    last = p;
    p += utf8_decode(s + p, e - p, &d);
  }
  return last > i ? last - i : e - i;
}

static void pretok_gpt2(const bpe *b, work *w, const char *s, size_t n,
                        out_ids *o) {
  size_t i = 0;
  while (i < n && !o->failed) {
    size_t m = gpt2_match(s, n, i);
    encode_piece(b, w, s + i, m, o);
    i += m;
  }
}

static void pretok(const bpe *b, work *w, const char *s, size_t n, out_ids *o) {
  if (b->pre != BPE_PRE_SMOLLM) {
    pretok_gpt2(b, w, s, n, o);
    return;
  }
  size_t i = 0, start = 0;
  while (i < n) {
    size_t k;
    uint32_t c = cp_at(s, n, i, &k);
    if (is_n(c)) {
      pretok_gpt2(b, w, s + start, i - start, o);
      encode_piece(b, w, s + i, k, o);
      start = i + k;
    }
    i += k;
  }
  pretok_gpt2(b, w, s + start, n - start, o);
}

/* the longest special token at s[i..n), or NULL */
static const special *special_at(const bpe *b, const char *s, size_t n,
                                 size_t i) {
  for (int64_t k = 0; k < b->n_sp; k++) { /* longest first */
    const special *t = &b->sp[k];
    if (t->len <= n - i && memcmp(s + i, t->text, t->len) == 0)
      return t;
  }
  return NULL;
}

int bpe_encode(const bpe *b, const char *text, size_t len, int specials,
               int32_t **ids, int64_t *n, char *err, size_t es) {
  out_ids o = {0};
  work w = {0};
  *ids = NULL;
  *n = 0;
  if (!text && len > 0) {
    fail(err, es, "text is NULL");
    return -1;
  }
  size_t start = 0, i = 0;
  while (specials && b->n_sp > 0 && i < len && !o.failed) {
    const special *t = b->sp_first[(unsigned char)text[i]]
                           ? special_at(b, text, len, i)
                           : NULL;
    if (!t) {
      i++;
      continue;
    }
    pretok(b, &w, text + start, i - start, &o);
    emit(&o, t->id);
    i += t->len;
    start = i;
  }
  if (!o.failed)
    pretok(b, &w, text + start, len - start, &o);
  free(w.id);
  free(w.prev);
  free(w.next);
  free(w.heap);
  if (o.failed) {
    free(o.v);
    fail(err, es, "out of memory");
    return -1;
  }
  *ids = o.v;
  *n = o.n;
  return 0;
}

int bpe_decode(const bpe *b, const int32_t *ids, int64_t n, char **out,
               size_t *len, char *err, size_t es) {
  size_t total = 0;
  *out = NULL;
  *len = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= b->n_tokens) {
      fail(err, es, "token id %d is outside the vocabulary (0..%lld)", ids[i],
           (long long)b->n_tokens - 1);
      return -1;
    }
    total += b->blen[ids[i]];
  }
  char *s = malloc(total + 1);
  if (!s) {
    fail(err, es, "out of memory");
    return -1;
  }
  size_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    memcpy(s + k, b->bytes[ids[i]], b->blen[ids[i]]);
    k += b->blen[ids[i]];
  }
  s[k] = 0;
  *out = s;
  *len = k;
  return 0;
}
