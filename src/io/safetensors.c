/*
 * safetensors.c - the .safetensors reader of safetensors.h: read, parse the
 * header with json.c, check every tensor and the tiling of the data.
 */
#include "safetensors.h"

#include "attn.h"
#include "json.h"
#include "read_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
  const char *name;
  size_t size;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},
    [ST_I8] = {"I8", 1},           [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},       [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},         [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

size_t st_dtype_size(st_dtype dt) {
  return (unsigned)dt < ST_DTYPE_COUNT ? st_dtypes[dt].size : 0;
}

const char *st_dtype_name(st_dtype dt) {
  return (unsigned)dt < ST_DTYPE_COUNT ? st_dtypes[dt].name : "?";
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
fail(char *err, size_t err_size, const char *path, const char *fmt, ...) {
  if (!err || !err_size)
    return -1;
  int k = path ? snprintf(err, err_size, "%s: ", path) : 0;
  if (k < 0 || (size_t)k >= err_size)
    return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + k, err_size - (size_t)k, fmt, ap);
  va_end(ap);
  for (char *c = err; *c; c++) /* one line */
    if ((unsigned char)*c < 0x20)
      *c = '?';
  return -1;
}

/* A short, printable copy of a name for messages. */
static const char *shown(const char *name, char buf[64]) {
  size_t n = strlen(name);
  snprintf(buf, 64, "%.*s%s", n > 48 ? 48 : (int)n, name, n > 48 ? "..." : "");
  return buf;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int by_offset(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a;
  const st_tensor *y = *(const st_tensor *const *)b;
  if (x->data != y->data)
    return x->data < y->data ? -1 : 1;
  return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Parses one tensor entry (object node v) into t; offsets into begin/end. */
static int parse_tensor(const json_doc *d, int64_t v, st_tensor *t,
                        uint64_t *begin, uint64_t *end, const char *path,
                        char *err, size_t es) {
  char nb[64];
  const char *nm = shown(t->name, nb);
  if (d->nodes[v].type != JSON_OBJECT)
    return fail(err, es, path, "tensor '%s': not an object", nm);
  int64_t dt = json_object_get(d, v, "dtype");
  int64_t sh = json_object_get(d, v, "shape");
  int64_t off = json_object_get(d, v, "data_offsets");
  if (dt < 0 || sh < 0 || off < 0 || d->nodes[v].count != 3)
    return fail(err, es, path,
                "tensor '%s': needs exactly dtype, shape and data_offsets", nm);
  t->dtype = ST_DTYPE_COUNT;
  for (int k = 0; k < ST_DTYPE_COUNT; k++)
    if (json_string_eq(d, dt, st_dtypes[k].name))
      t->dtype = (st_dtype)k;
  if (t->dtype == ST_DTYPE_COUNT)
    return fail(err, es, path, "tensor '%s': unknown dtype", nm);
  if (d->nodes[sh].type != JSON_ARRAY || d->nodes[sh].count > ST_MAX_DIMS)
    return fail(err, es, path,
                "tensor '%s': shape must be an array of at most %d sizes", nm,
                ST_MAX_DIMS);
  t->ndim = (int)d->nodes[sh].count;
  int zero = 0;
  for (int k = 0; k < ST_MAX_DIMS; k++) {
    int64_t x = 1;
    if (k < t->ndim && (json_int64(d, sh + 1 + k, &x) != 0 || x < 0))
      return fail(err, es, path,
                  "tensor '%s': shape[%d] is not a non-negative integer", nm,
                  k);
    t->shape[k] = x;
    zero |= x == 0;
  }
  /* count * element size must fit in int64 (a zero dimension: 0) */
  const uint64_t esz = st_dtypes[t->dtype].size;
  uint64_t count = zero ? 0 : 1;
  for (int k = 0; k < t->ndim && !zero; k++) {
    if (count > (uint64_t)INT64_MAX / esz / (uint64_t)t->shape[k])
      return fail(err, es, path, "tensor '%s': size overflows", nm);
    count *= (uint64_t)t->shape[k];
  }
  t->count = (int64_t)count;
  t->nbytes = count * esz;
  int64_t b, e;
  if (d->nodes[off].type != JSON_ARRAY || d->nodes[off].count != 2 ||
      json_int64(d, off + 1, &b) != 0 || json_int64(d, off + 2, &e) != 0 ||
      b < 0 || e < b)
    return fail(err, es, path,
                "tensor '%s': data_offsets must be [begin, end] with "
                "0 <= begin <= end",
                nm);
  if ((uint64_t)(e - b) != t->nbytes)
    return fail(err, es, path,
                "tensor '%s': data_offsets span %lld bytes, but %s of "
                "%llu elements needs %llu",
                nm, (long long)(e - b), st_dtypes[t->dtype].name,
                (unsigned long long)count, (unsigned long long)t->nbytes);
  *begin = (uint64_t)b;
  *end = (uint64_t)e;
  return 0;
}

/* Checks that the tensors tile [0, data_size) exactly. */
static int check_tiling(st_file *f, const unsigned char *data,
                        uint64_t data_size, const char *path, char *err,
                        size_t es) {
  if (f->n == 0) {
    if (data_size != 0)
      return fail(err, es, path, "%llu bytes of data but no tensor",
                  (unsigned long long)data_size);
    return 0;
  }
  st_tensor **order = malloc((size_t)f->n * sizeof *order);
  if (!order)
    return fail(err, es, path, "out of memory");
  for (int64_t i = 0; i < f->n; i++)
    order[i] = &f->tensors[i];
  qsort(order, (size_t)f->n, sizeof *order, by_offset);
  uint64_t at = 0;
  int rc = 0;
  char nb[64];
  for (int64_t i = 0; i < f->n && rc == 0; i++) {
    uint64_t b = (uint64_t)(order[i]->data - data);
    if (b != at)
      rc = fail(err, es, path,
                b < at ? "tensor '%s' overlaps the tensor before it (begin "
                         "%llu, previous end %llu)"
                       : "tensor '%s' leaves a gap before it (begin %llu, "
                         "previous end %llu)",
                shown(order[i]->name, nb), (unsigned long long)b,
                (unsigned long long)at);
    at = b + order[i]->nbytes;
  }
  if (rc == 0 && at != data_size)
    rc = fail(err, es, path,
              at > data_size
                  ? "truncated: the tensors need %llu bytes of data, the file "
                    "has %llu"
                  : "the tensors end at %llu but the data has %llu bytes",
              (unsigned long long)at, (unsigned long long)data_size);
  free(order);
  return rc;
}

/* Fills f->tensors from the header's root object. */
static int parse_header(st_file *f, const json_doc *d,
                        const unsigned char *data, uint64_t data_size,
                        const char *path, char *err, size_t es) {
  const json_node *root = &d->nodes[0];
  if (root->type != JSON_OBJECT)
    return fail(err, es, path, "header: not a JSON object");
  size_t name_bytes = 0;
  int64_t n = 0;
  for (int64_t k = 0, c = 1; k < root->count; k++) {
    int64_t v = d->nodes[c].next;
    if (json_string_eq(d, c, "__metadata__")) {
      if (d->nodes[v].type != JSON_OBJECT)
        return fail(err, es, path, "__metadata__ is not an object");
      for (int64_t m = 0, mc = v + 1; m < d->nodes[v].count; m++) {
        int64_t mv = d->nodes[mc].next;
        if (d->nodes[mv].type != JSON_STRING)
          return fail(err, es, path, "__metadata__ values must be strings");
        mc = d->nodes[mv].next;
      }
    } else {
      int64_t len = json_string_copy(d, c, NULL, 0);
      if (len < 0)
        return fail(err, es, path, "a tensor name holds U+0000");
      name_bytes += (size_t)len + 1;
      n++;
    }
    c = d->nodes[v].next;
  }
  f->tensors = calloc(n ? (size_t)n : 1, sizeof *f->tensors);
  f->names = malloc(name_bytes ? name_bytes : 1);
  if (!f->tensors || !f->names)
    return fail(err, es, path, "out of memory");
  char *np = f->names;
  for (int64_t k = 0, c = 1; k < root->count; k++) {
    int64_t v = d->nodes[c].next;
    if (!json_string_eq(d, c, "__metadata__")) {
      st_tensor *t = &f->tensors[f->n++];
      int64_t len =
          json_string_copy(d, c, np, (size_t)(f->names + name_bytes - np));
      t->name = np;
      np += len + 1;
      uint64_t b = 0, e = 0;
      if (parse_tensor(d, v, t, &b, &e, path, err, es) != 0)
        return -1;
      if (e > data_size) {
        char nb[64];
        return fail(err, es, path,
                    "tensor '%s': data_offsets [%llu, %llu] past the end of "
                    "the data (%llu bytes): truncated?",
                    shown(t->name, nb), (unsigned long long)b,
                    (unsigned long long)e, (unsigned long long)data_size);
      }
      t->data = data + b;
    }
    c = d->nodes[v].next;
  }
  qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, by_name);
  for (int64_t i = 1; i < f->n; i++)
    if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
      char nb[64];
      return fail(err, es, path, "tensor '%s' appears twice",
                  shown(f->tensors[i].name, nb));
    }
  return check_tiling(f, data, data_size, path, err, es);
}

static int parse(const void *bytes, size_t n, st_file *f, const char *path,
                 char *err, size_t es) {
  const unsigned char *b = bytes;
  f->base = b;
  f->size = n;
  if (n < 8)
    return fail(err, es, path, "truncated: %zu bytes, a header length needs 8",
                n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = (hl << 8) | b[i];
  if (hl > ST_MAX_HEADER)
    return fail(err, es, path, "header length %llu is over the limit (%llu)",
                (unsigned long long)hl, (unsigned long long)ST_MAX_HEADER);
  if (hl > n - 8)
    return fail(err, es, path,
                "truncated: header length %llu, but only %zu bytes follow",
                (unsigned long long)hl, n - 8);
  if (hl < 2 || b[8] != '{')
    return fail(err, es, path, "header: not a JSON object (not safetensors?)");
  json_doc d;
  char jerr[160];
  if (json_parse((const char *)b + 8, (size_t)hl, &d, jerr, sizeof jerr) != 0)
    return fail(err, es, path, "header: %s", jerr);
  int rc =
      parse_header(f, &d, b + 8 + hl, (uint64_t)(n - 8 - hl), path, err, es);
  json_free(&d);
  return rc;
}

int st_parse(const void *bytes, size_t n, st_file *f, char *err,
             size_t err_size) {
  memset(f, 0, sizeof *f);
  if (!bytes && n)
    return fail(err, err_size, NULL, "no data");
  if (parse(bytes, n, f, NULL, err, err_size) != 0) {
    st_close(f);
    return -1;
  }
  return 0;
}

int st_open(const char *path, st_file *f, char *err, size_t err_size) {
  memset(f, 0, sizeof *f);
  /* O_NONBLOCK: opening a FIFO must not wait for a writer */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return fail(err, err_size, path, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail(err, err_size, path, "not a regular file");
  }
  if (st.st_size < 8) {
    close(fd);
    return fail(err, err_size, path,
                "truncated: %lld bytes, a header length needs 8",
                (long long)st.st_size);
  }
  const size_t n = (size_t)st.st_size;
  unsigned char *m;
  char why[96];
  const int rc = io_read_file(fd, n, &m, why, sizeof why);
  close(fd);
  if (rc)
    return fail(err, err_size, path, "%s", why);
  if (parse(m, n, f, path, err, err_size) != 0) {
    free(m);
    f->base = NULL;
    st_close(f);
    return -1;
  }
  f->map = m;
  return 0;
}

void st_close(st_file *f) {
  if (!f)
    return;
  free(f->map);
  free(f->tensors);
  free(f->names);
  memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
  int64_t lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->tensors[mid].name, name);
    if (c == 0)
      return &f->tensors[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

int st_read_f32(const st_tensor *t, int ndim, const int64_t *shape, float *dst,
                int64_t count, char *err, size_t err_size) {
  char nb[64];
  const char *nm = shown(t->name, nb);
  if (t->count != count)
    return fail(err, err_size, NULL,
                "tensor '%s': %lld elements, expected %lld", nm,
                (long long)t->count, (long long)count);
  if (shape) {
    int ok = t->ndim == ndim;
    for (int k = 0; ok && k < ndim; k++)
      ok = t->shape[k] == shape[k];
    if (!ok)
      return fail(err, err_size, NULL, "tensor '%s': unexpected shape", nm);
  }
  const unsigned char *s = t->data;
  switch (t->dtype) {
  case ST_F32:
    if (count)
      memcpy(dst, s, (size_t)count * sizeof(float));
    return 0;
  case ST_F16:
  case ST_BF16:
    for (int64_t i = 0; i < count; i++) {
      uint16_t h = (uint16_t)(s[2 * i] | (s[2 * i + 1] << 8));
      dst[i] = t->dtype == ST_F16 ? attn_f16_to_f32(h) : attn_bf16_to_f32(h);
    }
    return 0;
  default:
    return fail(err, err_size, NULL,
                "tensor '%s': dtype %s (F32, F16 or BF16 expected)", nm,
                st_dtype_name(t->dtype));
  }
}
