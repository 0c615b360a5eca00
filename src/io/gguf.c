/* gguf.c - GGUF v3 reader and dequantisation (see gguf.h). */
#include "gguf.h"
#include "read_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct gguf_file {
  const uint8_t *base; /* the bytes (read or the caller's) */
  size_t size;
  void *map; /* the file read by gguf_open (owned), or NULL */
  uint32_t version;
  uint32_t alignment;
  int64_t n_kv;
  gguf_kv *kv; /* (n_kv) */
  int64_t n_tensors;
  gguf_tensor *tensors; /* (n_tensors) */
};

static void fail(char *err, size_t err_size, const char *fmt, ...) {
  if (!err || err_size == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_size, fmt, ap);
  va_end(ap);
}

/* ---- little-endian reads through a bounds-checked cursor ---------------- */

typedef struct cursor {
  const uint8_t *p;
  size_t left;
  const uint8_t *base;
} cursor;

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static int take(cursor *c, size_t n, const uint8_t **at) {
  if (n > c->left)
    return -1;
  *at = c->p;
  c->p += n;
  c->left -= n;
  return 0;
}

static int rd_u32(cursor *c, uint32_t *v) {
  const uint8_t *p;
  if (take(c, 4, &p))
    return -1;
  *v = (uint32_t)le(p, 4);
  return 0;
}

static int rd_u64(cursor *c, uint64_t *v) {
  const uint8_t *p;
  if (take(c, 8, &p))
    return -1;
  *v = le(p, 8);
  return 0;
}

static int rd_str(cursor *c, gguf_str *s) {
  uint64_t n;
  const uint8_t *p;
  if (rd_u64(c, &n) || n > c->left || take(c, (size_t)n, &p))
    return -1;
  s->s = (const char *)p;
  s->len = (size_t)n;
  return 0;
}

/* Bytes of one scalar of type t; 0 for STRING/ARRAY, -1 for unknown. */
static int scalar_size(uint32_t t) {
  switch (t) {
  case GGUF_TYPE_UINT8:
  case GGUF_TYPE_INT8:
  case GGUF_TYPE_BOOL:
    return 1;
  case GGUF_TYPE_UINT16:
  case GGUF_TYPE_INT16:
    return 2;
  case GGUF_TYPE_UINT32:
  case GGUF_TYPE_INT32:
  case GGUF_TYPE_FLOAT32:
    return 4;
  case GGUF_TYPE_UINT64:
  case GGUF_TYPE_INT64:
  case GGUF_TYPE_FLOAT64:
    return 8;
  case GGUF_TYPE_STRING:
  case GGUF_TYPE_ARRAY:
    return 0;
  default:
    return -1;
  }
}

static int str_eq(gguf_str a, const char *b) {
  size_t n = strlen(b);
  return a.len == n && memcmp(a.s, b, n) == 0;
}

/* Prints at most 48 bytes of s, non-printable bytes as '?'. */
static const char *shown(gguf_str s, char buf[52]) {
  size_t n = s.len < 48 ? s.len : 48;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s.s[i];
    buf[i] = ch >= 32 && ch < 127 ? (char)ch : '?';
  }
  if (s.len > 48) {
    buf[n++] = '.';
    buf[n++] = '.';
  }
  buf[n] = 0;
  return buf;
}

/* ---- the three sections ------------------------------------------------- */

static int parse_kv(gguf_file *f, cursor *c, int64_t i, char *err, size_t es) {
  gguf_kv *kv = &f->kv[i];
  uint32_t t;
  char b[52];
  if (rd_str(c, &kv->key)) {
    fail(err, es, "metadata %lld: key truncated", (long long)i);
    return -1;
  }
  if (memchr(kv->key.s, 0, kv->key.len) != NULL) {
    fail(err, es, "metadata %lld: key '%s' holds a NUL byte", (long long)i,
         shown(kv->key, b));
    return -1;
  }
  if (rd_u32(c, &t)) {
    fail(err, es, "metadata '%s': type truncated", shown(kv->key, b));
    return -1;
  }
  if (scalar_size(t) < 0) {
    fail(err, es, "metadata '%s': unknown value type %u", shown(kv->key, b), t);
    return -1;
  }
  kv->type = (gguf_type)t;
  kv->data = c->p;
  if (t == GGUF_TYPE_STRING) {
    gguf_str s;
    if (rd_str(c, &s)) {
      fail(err, es, "metadata '%s': string truncated", shown(kv->key, b));
      return -1;
    }
    kv->size = (size_t)(c->p - kv->data);
    return 0;
  }
  if (t != GGUF_TYPE_ARRAY) {
    const uint8_t *p;
    if (take(c, (size_t)scalar_size(t), &p)) {
      fail(err, es, "metadata '%s': value truncated", shown(kv->key, b));
      return -1;
    }
    kv->size = (size_t)scalar_size(t);
    return 0;
  }
  uint32_t at;
  uint64_t n;
  if (rd_u32(c, &at) || rd_u64(c, &n)) {
    fail(err, es, "metadata '%s': array header truncated", shown(kv->key, b));
    return -1;
  }
  int es1 = scalar_size(at);
  if (es1 < 0 || at == GGUF_TYPE_ARRAY) {
    fail(err, es, "metadata '%s': %s array element type %u", shown(kv->key, b),
         at == GGUF_TYPE_ARRAY ? "unsupported (nested)" : "unknown", at);
    return -1;
  }
  kv->arr_type = (gguf_type)at;
  kv->arr_n = n;
  kv->data = c->p;
  if (at == GGUF_TYPE_STRING) {
    if (n > c->left / 8) { /* each string needs at least its length */
      fail(err, es, "metadata '%s': %llu strings cannot fit in %zu bytes",
           shown(kv->key, b), (unsigned long long)n, c->left);
      return -1;
    }
    for (uint64_t j = 0; j < n; j++) {
      gguf_str s;
      if (rd_str(c, &s)) {
        fail(err, es, "metadata '%s': string %llu of %llu truncated",
             shown(kv->key, b), (unsigned long long)j, (unsigned long long)n);
        return -1;
      }
    }
  } else {
    const uint8_t *p;
    if (n > c->left / (size_t)es1 || take(c, (size_t)n * (size_t)es1, &p)) {
      fail(err, es, "metadata '%s': array of %llu elements truncated",
           shown(kv->key, b), (unsigned long long)n);
      return -1;
    }
  }
  kv->size = (size_t)(c->p - kv->data);
  return 0;
}

static int parse_tensor_info(gguf_file *f, cursor *c, int64_t i, char *err,
                             size_t es) {
  gguf_tensor *t = &f->tensors[i];
  char b[52];
  uint32_t nd, ty;
  if (rd_str(c, &t->name)) {
    fail(err, es, "tensor %lld: name truncated", (long long)i);
    return -1;
  }
  if (memchr(t->name.s, 0, t->name.len) != NULL) {
    fail(err, es, "tensor %lld: name '%s' holds a NUL byte", (long long)i,
         shown(t->name, b));
    return -1;
  }
  if (rd_u32(c, &nd)) {
    fail(err, es, "tensor '%s': truncated", shown(t->name, b));
    return -1;
  }
  if (nd < 1 || nd > GGUF_MAX_DIMS) {
    fail(err, es, "tensor '%s': %u dimensions (1 to %d supported)",
         shown(t->name, b), nd, GGUF_MAX_DIMS);
    return -1;
  }
  t->n_dims = nd;
  int64_t count = 1;
  for (int d = 0; d < GGUF_MAX_DIMS; d++)
    t->ne[d] = 1;
  for (uint32_t d = 0; d < nd; d++) {
    uint64_t ne;
    if (rd_u64(c, &ne)) {
      fail(err, es, "tensor '%s': shape truncated", shown(t->name, b));
      return -1;
    }
    if (ne < 1 || ne > (uint64_t)INT64_MAX || (int64_t)ne > INT64_MAX / count) {
      fail(err, es, "tensor '%s': dimension %u = %llu is zero or overflows",
           shown(t->name, b), d, (unsigned long long)ne);
      return -1;
    }
    t->ne[d] = (int64_t)ne;
    count *= (int64_t)ne;
  }
  t->n_elements = count;
  if (rd_u32(c, &ty) || rd_u64(c, &t->offset)) {
    fail(err, es, "tensor '%s': truncated", shown(t->name, b));
    return -1;
  }
  if (!gguf_dtype_name(ty)) {
    fail(err, es, "tensor '%s': unsupported tensor type %u", shown(t->name, b),
         ty);
    return -1;
  }
  t->dtype = (gguf_dtype)ty;
  t->n_bytes = gguf_dtype_bytes(ty, count);
  if (t->n_bytes == 0) {
    fail(err, es,
         "tensor '%s': %lld elements are not whole %s blocks (or too many)",
         shown(t->name, b), (long long)count, gguf_dtype_name(ty));
    return -1;
  }
  return 0;
}

/* Orders names by (length, bytes), for qsort. */
static int name_order(const void *pa, const void *pb) {
  const gguf_str *a = pa, *b = pb;
  if (a->len != b->len)
    return a->len < b->len ? -1 : 1;
  return a->len ? memcmp(a->s, b->s, a->len) : 0;
}

/* Fails when a metadata key (tensors 0) or a tensor name (tensors 1)
   appears twice: sorted, O(n log n), so that a hostile file with millions
   of keys cannot make the check quadratic. */
static int unique_names(const gguf_file *f, int tensors, char *err, size_t es) {
  size_t n = (size_t)(tensors ? f->n_tensors : f->n_kv);
  if (n < 2)
    return 0;
  gguf_str *names = malloc(n * sizeof *names);
  if (!names) {
    fail(err, es, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    names[i] = tensors ? f->tensors[i].name : f->kv[i].key;
  qsort(names, n, sizeof *names, name_order);
  int rc = 0;
  for (size_t i = 1; i < n && rc == 0; i++)
    if (name_order(&names[i - 1], &names[i]) == 0) {
      char b[52];
      fail(err, es, "%s '%s' appears twice",
           tensors ? "tensor" : "metadata key", shown(names[i], b));
      rc = -1;
    }
  free(names);
  return rc;
}

static int parse(gguf_file *f, char *err, size_t es) {
  cursor c = {f->base, f->size, f->base};
  const uint8_t *magic;
  uint64_t nt, nkv;
  if (take(&c, 4, &magic) || memcmp(magic, "GGUF", 4) != 0) {
    fail(err, es, "not a GGUF file (bad magic)");
    return -1;
  }
  if (rd_u32(&c, &f->version) || rd_u64(&c, &nt) || rd_u64(&c, &nkv)) {
    fail(err, es, "GGUF header truncated");
    return -1;
  }
  if (f->version != 3) {
    fail(err, es, "GGUF version %u (only version 3 is supported)", f->version);
    return -1;
  }
  /* a key-value pair needs >= 12 bytes, a tensor info >= 24 */
  if (nkv > c.left / 12 || nt > c.left / 24 || nkv * 12 + nt * 24 > c.left) {
    fail(err, es,
         "GGUF header claims %llu metadata pairs and %llu tensors, "
         "more than the %zu bytes of the file can hold",
         (unsigned long long)nkv, (unsigned long long)nt, f->size);
    return -1;
  }
  f->kv = calloc(nkv ? (size_t)nkv : 1, sizeof *f->kv);
  f->tensors = calloc(nt ? (size_t)nt : 1, sizeof *f->tensors);
  if (!f->kv || !f->tensors) {
    fail(err, es, "out of memory");
    return -1;
  }
  for (uint64_t i = 0; i < nkv; i++) {
    if (parse_kv(f, &c, (int64_t)i, err, es))
      return -1;
    f->n_kv = (int64_t)i + 1;
  }
  if (unique_names(f, 0, err, es))
    return -1;
  f->alignment = 32;
  const gguf_kv *al = gguf_find_kv(f, "general.alignment");
  if (al) {
    uint32_t a;
    if (gguf_get_u32(f, "general.alignment", &a, err, es))
      return -1;
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20)) {
      fail(err, es, "general.alignment = %u is not a power of two <= 2^20", a);
      return -1;
    }
    f->alignment = a;
  }
  for (uint64_t i = 0; i < nt; i++) {
    if (parse_tensor_info(f, &c, (int64_t)i, err, es))
      return -1;
    f->n_tensors = (int64_t)i + 1;
  }
  if (unique_names(f, 1, err, es))
    return -1;
  size_t pos = f->size - c.left;
  size_t data0 = (pos + f->alignment - 1) / f->alignment * f->alignment;
  if (nt > 0 && (data0 < pos || data0 > f->size)) {
    fail(err, es, "tensor data section starts past the end of the file");
    return -1;
  }
  size_t avail = data0 <= f->size ? f->size - data0 : 0;
  for (int64_t i = 0; i < f->n_tensors; i++) {
    gguf_tensor *t = &f->tensors[i];
    char b[52];
    if (t->offset % f->alignment != 0) {
      fail(err, es,
           "tensor '%s': offset %llu is not a multiple of the "
           "alignment %u",
           shown(t->name, b), (unsigned long long)t->offset, f->alignment);
      return -1;
    }
    if (t->offset > avail || t->n_bytes > avail - t->offset) {
      fail(err, es,
           "tensor '%s': bytes %llu..%llu lie outside the %zu bytes "
           "of the data section (file truncated?)",
           shown(t->name, b), (unsigned long long)t->offset,
           (unsigned long long)t->offset + t->n_bytes, avail);
      return -1;
    }
    t->data = f->base + data0 + t->offset;
  }
  return 0;
}

static int finish(gguf_file *f, gguf_file **out, char *err, size_t es) {
  if (parse(f, err, es)) {
    gguf_close(f);
    return -1;
  }
  *out = f;
  return 0;
}

int gguf_open_memory(const void *data, size_t n, gguf_file **out, char *err,
                     size_t err_size) {
  if (!out) {
    fail(err, err_size, "gguf_open_memory: out is NULL");
    return -1;
  }
  *out = NULL;
  if (!data && n > 0) {
    fail(err, err_size, "gguf_open_memory: data is NULL");
    return -1;
  }
  gguf_file *f = calloc(1, sizeof *f);
  if (!f) {
    fail(err, err_size, "out of memory");
    return -1;
  }
  f->base = data ? data : (const uint8_t *)"";
  f->size = n;
  return finish(f, out, err, err_size);
}

int gguf_open(const char *path, gguf_file **out, char *err, size_t err_size) {
  char e[256] = "";
  if (!out || !path) {
    fail(err, err_size, "gguf_open: path or out is NULL");
    return -1;
  }
  *out = NULL;
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) {
    fail(err, err_size, "%s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    fail(err, err_size, "%s: not a regular file", path);
    close(fd);
    return -1;
  }
  if (st.st_size <= 0) {
    fail(err, err_size, "%s: empty file", path);
    close(fd);
    return -1;
  }
  if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
    fail(err, err_size, "%s: too large", path);
    close(fd);
    return -1;
  }
  const size_t n = (size_t)st.st_size;
  unsigned char *m;
  const int rc = io_read_file(fd, n, &m, e, sizeof e);
  close(fd);
  if (rc) {
    fail(err, err_size, "%s: %s", path, e);
    return -1;
  }
  gguf_file *f = calloc(1, sizeof *f);
  if (!f) {
    free(m);
    fail(err, err_size, "%s: out of memory", path);
    return -1;
  }
  f->base = m;
  f->size = n;
  f->map = m;
  if (finish(f, out, e, sizeof e)) {
    fail(err, err_size, "%s: %s", path, e);
    return -1;
  }
  return 0;
}

void gguf_close(gguf_file *f) {
  if (!f)
    return;
  free(f->map);
  free(f->kv);
  free(f->tensors);
  free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
int64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
int64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i) {
  return i >= 0 && i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
  return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
  for (int64_t i = 0; i < f->n_kv; i++)
    if (str_eq(f->kv[i].key, key))
      return &f->kv[i];
  return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
  for (int64_t i = 0; i < f->n_tensors; i++)
    if (str_eq(f->tensors[i].name, name))
      return &f->tensors[i];
  return NULL;
}

/* ---- typed metadata ----------------------------------------------------- */

/* key for a message: printable, at most 48 bytes (it may come from a file) */
static const char *kshow(const char *key, char buf[52]) {
  return shown((gguf_str){key, strlen(key)}, buf);
}

static const gguf_kv *need(const gguf_file *f, const char *key, char *err,
                           size_t es) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  char kb[52];
  if (!kv)
    fail(err, es, "metadata '%s' is missing", kshow(key, kb));
  return kv;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, char *err,
                 size_t es) {
  char kb[52];
  const gguf_kv *kv = need(f, key, err, es);
  if (!kv)
    return -1;
  int sz = scalar_size(kv->type);
  int sign = kv->type == GGUF_TYPE_INT8 || kv->type == GGUF_TYPE_INT16 ||
             kv->type == GGUF_TYPE_INT32 || kv->type == GGUF_TYPE_INT64;
  int isint = sz > 0 && kv->type != GGUF_TYPE_FLOAT32 &&
              kv->type != GGUF_TYPE_FLOAT64 && kv->type != GGUF_TYPE_BOOL;
  if (!isint) {
    fail(err, es, "metadata '%s' is not an integer (type %d)", kshow(key, kb),
         (int)kv->type);
    return -1;
  }
  uint64_t v = le(kv->data, sz);
  if (sign && sz < 8 && (v >> (8 * sz - 1)) & 1)
    v |= ~0ull << (8 * sz); /* sign-extend */
  if ((sign && (int64_t)v < 0) || v > UINT32_MAX) {
    fail(err, es, "metadata '%s' = %lld does not fit in 32 bits unsigned",
         kshow(key, kb), (long long)v);
    return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, char *err,
                 size_t es) {
  char kb[52];
  const gguf_kv *kv = need(f, key, err, es);
  if (!kv)
    return -1;
  if (kv->type == GGUF_TYPE_FLOAT32) {
    uint32_t u = (uint32_t)le(kv->data, 4);
    memcpy(out, &u, 4);
    return 0;
  }
  if (kv->type == GGUF_TYPE_FLOAT64) {
    uint64_t u = le(kv->data, 8);
    double d;
    memcpy(&d, &u, 8);
    *out = (float)d;
    return 0;
  }
  fail(err, es, "metadata '%s' is not a float (type %d)", kshow(key, kb),
       (int)kv->type);
  return -1;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out, char *err,
                  size_t es) {
  char kb[52];
  const gguf_kv *kv = need(f, key, err, es);
  if (!kv)
    return -1;
  if (kv->type != GGUF_TYPE_BOOL) {
    fail(err, es, "metadata '%s' is not a bool (type %d)", kshow(key, kb),
         (int)kv->type);
    return -1;
  }
  *out = kv->data[0] != 0;
  return 0;
}

int gguf_get_string(const gguf_file *f, const char *key, gguf_str *out,
                    char *err, size_t es) {
  char kb[52];
  const gguf_kv *kv = need(f, key, err, es);
  if (!kv)
    return -1;
  if (kv->type != GGUF_TYPE_STRING) {
    fail(err, es, "metadata '%s' is not a string (type %d)", kshow(key, kb),
         (int)kv->type);
    return -1;
  }
  out->len = (size_t)le(kv->data, 8); /* checked by the parser */
  out->s = (const char *)kv->data + 8;
  return 0;
}

int gguf_get_string_array(const gguf_file *f, const char *key, gguf_str **out,
                          uint64_t *n, char *err, size_t es) {
  char kb[52];
  *out = NULL;
  *n = 0;
  const gguf_kv *kv = need(f, key, err, es);
  if (!kv)
    return -1;
  if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING) {
    fail(err, es, "metadata '%s' is not an array of strings", kshow(key, kb));
    return -1;
  }
  gguf_str *a = malloc((kv->arr_n ? (size_t)kv->arr_n : 1) * sizeof *a);
  if (!a) {
    fail(err, es, "out of memory");
    return -1;
  }
  cursor c = {kv->data, kv->size, kv->data};
  for (uint64_t i = 0; i < kv->arr_n; i++)
    if (rd_str(&c, &a[i])) { /* cannot happen: the parser walked it */
      free(a);
      fail(err, es, "metadata '%s': string %llu truncated", kshow(key, kb),
           (unsigned long long)i);
      return -1;
    }
  *out = a;
  *n = kv->arr_n;
  return 0;
}

int gguf_get_i32_array(const gguf_file *f, const char *key, int32_t **out,
                       uint64_t *n, char *err, size_t es) {
  char kb[52];
  *out = NULL;
  *n = 0;
  const gguf_kv *kv = need(f, key, err, es);
  if (!kv)
    return -1;
  if (kv->type != GGUF_TYPE_ARRAY ||
      (kv->arr_type != GGUF_TYPE_INT32 && kv->arr_type != GGUF_TYPE_UINT32)) {
    fail(err, es, "metadata '%s' is not an array of 32-bit integers",
         kshow(key, kb));
    return -1;
  }
  int32_t *a = malloc((kv->arr_n ? (size_t)kv->arr_n : 1) * sizeof *a);
  if (!a) {
    fail(err, es, "out of memory");
    return -1;
  }
  for (uint64_t i = 0; i < kv->arr_n; i++) {
    uint32_t u = (uint32_t)le(kv->data + 4 * i, 4);
    if (kv->arr_type == GGUF_TYPE_UINT32 && u > INT32_MAX) {
      free(a);
      fail(err, es, "metadata '%s'[%llu] = %u does not fit in int32",
           kshow(key, kb), (unsigned long long)i, u);
      return -1;
    }
    memcpy(&a[i], &u, 4);
  }
  *out = a;
  *n = kv->arr_n;
  return 0;
}

int gguf_tensor_f32(const gguf_tensor *t, float *dst, int64_t count, char *err,
                    size_t es) {
  char b[52];
  if (count != t->n_elements) {
    fail(err, es, "tensor '%s' has %lld elements, not %lld", shown(t->name, b),
         (long long)t->n_elements, (long long)count);
    return -1;
  }
  if (gguf_dequantize(t->dtype, t->data, count, dst)) {
    fail(err, es, "tensor '%s': cannot convert type %u", shown(t->name, b),
         (unsigned)t->dtype);
    return -1;
  }
  return 0;
}
