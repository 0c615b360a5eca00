/*
 * test_gguf.c - the GGUF reader (src/io/gguf.c) on files built here: a
 * valid one read back field by field, every prefix of it (truncation at
 * each byte), and many malformed ones (bad magic and version, huge counts,
 * truncated strings, arrays and tensor infos, offsets out of range or
 * misaligned, unknown types, overflowing dimensions, duplicates), special
 * files (a directory, /dev/zero, a FIFO); and the dequantisation of every
 * type against its definition evaluated in double (exact: each value is
 * one product, or one product and one sum, rounded once).
 */
#include "gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
    } else {                                                                   \
      failed++;                                                                \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                              \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* ---- a little GGUF writer ----------------------------------------------- */

typedef struct buf {
  unsigned char *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p)
      abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
static void u32(buf *b, uint32_t v) {
  unsigned char c[4];
  for (int i = 0; i < 4; i++)
    c[i] = (unsigned char)(v >> (8 * i));
  put(b, c, 4);
}
static void u64(buf *b, uint64_t v) {
  unsigned char c[8];
  for (int i = 0; i < 8; i++)
    c[i] = (unsigned char)(v >> (8 * i));
  put(b, c, 8);
}
static void str(buf *b, const char *s) {
  u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void pad(buf *b, size_t align) {
  while (b->n % align)
    put(b, "", 1);
}

/* What the valid file holds. */
typedef struct spec {
  uint32_t version;
  uint64_t n_tensors_claim, n_kv_claim; /* 0 = the real counts */
  int bad_magic;
  uint32_t alignment; /* 0 = no general.alignment key */
  uint64_t t1_offset; /* offset of the second tensor (0 = right one) */
  uint32_t t1_type;   /* type of the second tensor                   */
  uint32_t t1_ndims;
  uint64_t t1_ne0, t1_ne1;
  int dup_key, dup_tensor, nested_array, unknown_kv_type;
  int nul_key, nul_tensor;   /* a NUL byte inside a key or a tensor name */
  uint64_t string_len_claim; /* of general.name (0 = right)          */
  uint64_t array_len_claim;  /* of tokenizer.ggml.tokens (0 = right)  */
} spec;

static spec valid(void) {
  spec s;
  memset(&s, 0, sizeof s);
  s.version = 3;
  s.t1_type = 0; /* f32 */
  s.t1_ndims = 2;
  s.t1_ne0 = 4;
  s.t1_ne1 = 3;
  return s;
}

/* Two tensors: "a" q8_0 [64] (68 bytes) and "b" (f32 [4, 3] = 48 bytes). */
static buf build(const spec *s) {
  buf b = {0};
  uint32_t align = s->alignment ? s->alignment : 32;
  put(&b, s->bad_magic ? "GGUX" : "GGUF", 4);
  u32(&b, s->version);
  u64(&b, s->n_tensors_claim ? s->n_tensors_claim : 2);
  uint64_t nkv =
      6 + (s->alignment != 0) + (s->dup_key != 0) + (s->nul_key != 0);
  u64(&b, s->n_kv_claim ? s->n_kv_claim : nkv);
  /* metadata */
  str(&b, "general.architecture");
  u32(&b, s->unknown_kv_type ? 77 : 8);
  str(&b, "llama");
  str(&b, "general.name");
  u32(&b, 8);
  if (s->string_len_claim) {
    u64(&b, s->string_len_claim);
    put(&b, "tiny", 4);
  } else {
    str(&b, "tiny");
  }
  str(&b, "llama.block_count");
  u32(&b, 4);
  u32(&b, 30);
  str(&b, "llama.rope.freq_base");
  u32(&b, 6);
  float f = 100000.0f;
  put(&b, &f, 4);
  str(&b, "tokenizer.ggml.add_bos_token");
  u32(&b, 7);
  put(&b, "\0", 1);
  str(&b, "tokenizer.ggml.tokens");
  u32(&b, 9);
  u32(&b, s->nested_array ? 9 : 8);
  u64(&b, s->array_len_claim ? s->array_len_claim : 3);
  str(&b, "a");
  str(&b, "bc");
  str(&b, "");
  if (s->alignment) {
    str(&b, "general.alignment");
    u32(&b, 4);
    u32(&b, s->alignment);
  }
  if (s->dup_key) {
    str(&b, "general.name");
    u32(&b, 8);
    str(&b, "again");
  }
  if (s->nul_key) { /* "general.name\0x": a C lookup would alias it */
    u64(&b, 14);
    put(&b, "general.name\0x", 14);
    u32(&b, 8);
    str(&b, "other");
  }
  /* tensor infos */
  str(&b, "a");
  u32(&b, 1);
  u64(&b, 64);
  u32(&b, 8); /* q8_0 */
  u64(&b, 0);
  if (s->nul_tensor) {
    u64(&b, 3);
    put(&b, "a\0b", 3);
  } else {
    str(&b, s->dup_tensor ? "a" : "b");
  }
  u32(&b, s->t1_ndims);
  for (uint32_t d = 0; d < s->t1_ndims && d < 8; d++)
    u64(&b, d == 0 ? s->t1_ne0 : d == 1 ? s->t1_ne1 : 1);
  u32(&b, s->t1_type);
  uint64_t off1 = (68 + align - 1) / align * align;
  u64(&b, s->t1_offset ? s->t1_offset : off1);
  pad(&b, align);
  /* data: a = q8_0 blocks, b = f32 */
  size_t data0 = b.n;
  for (int blk = 0; blk < 2; blk++) {
    uint16_t d = 0x3800; /* 0.5 */
    put(&b, &d, 2);
    for (int j = 0; j < 32; j++) {
      signed char q = (signed char)(j - 16 + blk);
      put(&b, &q, 1);
    }
  }
  while (b.n < data0 + off1)
    put(&b, "", 1);
  for (int i = 0; i < 12; i++) {
    float v = (float)i * 0.25f;
    put(&b, &v, 4);
  }
  return b;
}

static int opens(const buf *b, char *err, size_t es, gguf_file **f) {
  gguf_file *g = NULL;
  err[0] = 0;
  int rc = gguf_open_memory(b->p, b->n, &g, err, es);
  if (f)
    *f = g;
  else
    gguf_close(g);
  return rc;
}

static int str_is(gguf_str s, const char *c) {
  return s.len == strlen(c) && memcmp(s.s, c, s.len) == 0;
}

static void test_valid(void) {
  spec s = valid();
  buf b = build(&s);
  gguf_file *f;
  char err[256];
  CHECK(opens(&b, err, sizeof err, &f) == 0, "valid file: %s", err);
  if (!f)
    return;
  CHECK(gguf_version(f) == 3 && gguf_n_kv(f) == 6 && gguf_n_tensors(f) == 2,
        "counts");
  uint32_t v;
  float x;
  int bo;
  gguf_str name;
  CHECK(gguf_get_u32(f, "llama.block_count", &v, err, sizeof err) == 0 &&
            v == 30,
        "u32");
  CHECK(gguf_get_f32(f, "llama.rope.freq_base", &x, err, sizeof err) == 0 &&
            x == 100000.0f,
        "f32");
  CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &bo, err,
                      sizeof err) == 0 &&
            bo == 0,
        "bool");
  CHECK(gguf_get_string(f, "general.name", &name, err, sizeof err) == 0 &&
            str_is(name, "tiny"),
        "string");
  gguf_str *arr;
  uint64_t n;
  CHECK(gguf_get_string_array(f, "tokenizer.ggml.tokens", &arr, &n, err,
                              sizeof err) == 0 &&
            n == 3 && str_is(arr[0], "a") && str_is(arr[1], "bc") &&
            str_is(arr[2], ""),
        "string array");
  free(arr);
  /* wrong types and missing keys */
  CHECK(gguf_get_u32(f, "general.name", &v, err, sizeof err) != 0 &&
            strstr(err, "not an integer"),
        "u32 of a string: %s", err);
  CHECK(gguf_get_string(f, "llama.block_count", &name, err, sizeof err) != 0,
        "string of a u32");
  CHECK(gguf_get_f32(f, "nope", &x, err, sizeof err) != 0 &&
            strstr(err, "missing"),
        "missing: %s", err);
  int32_t *ia;
  CHECK(gguf_get_i32_array(f, "tokenizer.ggml.tokens", &ia, &n, err,
                           sizeof err) != 0,
        "i32 array of strings");
  const gguf_tensor *a = gguf_find_tensor(f, "a"),
                    *t = gguf_find_tensor(f, "b");
  CHECK(a && a->dtype == GGUF_DTYPE_Q8_0 && a->n_elements == 64 &&
            a->n_bytes == 68,
        "tensor a");
  CHECK(t && t->ne[0] == 4 && t->ne[1] == 3 && t->n_dims == 2 &&
            t->n_bytes == 48,
        "tensor b");
  if (a && t) {
    float out[64];
    CHECK(gguf_tensor_f32(a, out, 64, err, sizeof err) == 0, "deq a");
    int ok = 1;
    for (int j = 0; j < 64; j++)
      ok &= out[j] == 0.5f * (float)(j % 32 - 16 + j / 32);
    CHECK(ok, "q8_0 values");
    CHECK(gguf_tensor_f32(t, out, 12, err, sizeof err) == 0 && out[11] == 2.75f,
          "f32 values");
    CHECK(gguf_tensor_f32(t, out, 11, err, sizeof err) != 0, "wrong count");
  }
  gguf_close(f);
  /* every proper prefix fails cleanly with a message */
  int all = 1;
  for (size_t k = 0; k < b.n; k++) {
    buf p = {b.p, k, k};
    if (opens(&p, err, sizeof err, NULL) == 0 || err[0] == 0) {
      all = 0;
      printf("  prefix %zu of %zu was accepted\n", k, b.n);
      break;
    }
  }
  CHECK(all, "every truncation refused");
  free(b.p);
}

static void expect_fail(spec s, const char *needle, const char *what) {
  buf b = build(&s);
  char err[256];
  int rc = opens(&b, err, sizeof err, NULL);
  CHECK(rc != 0 && strstr(err, needle) != NULL, "%s: rc %d, err '%s'", what, rc,
        err);
  free(b.p);
}

static void test_malformed(void) {
  spec s;
  s = valid(), s.bad_magic = 1;
  expect_fail(s, "magic", "bad magic");
  s = valid(), s.version = 2;
  expect_fail(s, "version 2", "version 2");
  s = valid(), s.version = 4;
  expect_fail(s, "version 4", "version 4");
  s = valid(), s.n_kv_claim = UINT64_MAX;
  expect_fail(s, "more than", "huge n_kv");
  s = valid(), s.n_tensors_claim = (uint64_t)1 << 62;
  expect_fail(s, "more than", "huge n_tensors");
  s = valid(), s.n_kv_claim = 100;
  expect_fail(s, "", "n_kv too large but plausible");
  s = valid(), s.string_len_claim = UINT64_MAX;
  expect_fail(s, "string truncated", "huge string length");
  s = valid(), s.string_len_claim = 1000;
  expect_fail(s, "string truncated", "string past the end");
  s = valid(), s.array_len_claim = UINT64_MAX / 2;
  expect_fail(s, "cannot fit", "huge array length");
  s = valid(), s.array_len_claim = 40;
  expect_fail(s, "", "array past its strings");
  s = valid(), s.nested_array = 1;
  expect_fail(s, "nested", "nested array");
  s = valid(), s.unknown_kv_type = 1;
  expect_fail(s, "unknown value type", "unknown kv type");
  s = valid(), s.dup_key = 1;
  expect_fail(s, "twice", "duplicate key");
  s = valid(), s.dup_tensor = 1;
  expect_fail(s, "twice", "duplicate tensor");
  s = valid(), s.nul_key = 1;
  expect_fail(s, "NUL byte", "NUL inside a key");
  s = valid(), s.nul_tensor = 1;
  expect_fail(s, "NUL byte", "NUL inside a tensor name");
  s = valid(), s.t1_type = 99;
  expect_fail(s, "unsupported tensor type", "unknown tensor type");
  s = valid(), s.t1_type = 12; /* q4_K: not supported */
  expect_fail(s, "unsupported tensor type", "q4_K");
  s = valid(), s.t1_type = 2; /* q4_0 of 12 elements: not whole blocks */
  expect_fail(s, "blocks", "partial block");
  s = valid(), s.t1_ndims = 0;
  expect_fail(s, "dimensions", "0 dims");
  s = valid(), s.t1_ndims = 5;
  expect_fail(s, "dimensions", "5 dims");
  s = valid(), s.t1_ne0 = 0;
  expect_fail(s, "zero or overflows", "zero dim");
  s = valid(), s.t1_ne0 = (uint64_t)1 << 40, s.t1_ne1 = (uint64_t)1 << 40;
  expect_fail(s, "overflows", "dims overflow");
  s = valid(), s.t1_ne0 = UINT64_MAX;
  expect_fail(s, "overflows", "dim above int64");
  s = valid(), s.t1_ne0 = (uint64_t)1 << 61, s.t1_ne1 = 1;
  expect_fail(s, "", "bytes overflow");
  s = valid(), s.t1_offset = 100;
  expect_fail(s, "multiple of the alignment", "misaligned offset");
  s = valid(), s.t1_offset = 1 << 20;
  expect_fail(s, "outside", "offset out of range");
  s = valid(), s.t1_offset = UINT64_MAX - 31;
  expect_fail(s, "outside", "offset + size overflow");
  s = valid(), s.t1_ne1 = 4; /* 64 bytes where 48 are */
  expect_fail(s, "outside", "tensor past the end");
  s = valid(), s.alignment = 24;
  expect_fail(s, "power of two", "alignment 24");
  s = valid(), s.alignment = 64; /* valid with another alignment */
  {
    buf b = build(&s);
    char err[256];
    gguf_file *f;
    CHECK(opens(&b, err, sizeof err, &f) == 0 && gguf_alignment(f) == 64,
          "alignment 64: %s", err);
    gguf_close(f);
    free(b.p);
  }
  char err[256] = "";
  gguf_file *f = NULL;
  CHECK(gguf_open_memory(NULL, 0, &f, err, sizeof err) != 0 && !f,
        "empty memory");
  CHECK(gguf_open_memory("GGUF", 4, &f, err, sizeof err) != 0 && !f,
        "header only");
}

/* 200,000 distinct keys open (the duplicate check sorts; a pairwise check
   would make such a file cost 2e10 comparisons); the same with the first
   key repeated last is refused. */
static void test_many_keys(void) {
  enum { N = 200000 };
  for (int dup = 0; dup < 2; dup++) {
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, N);
    char key[32];
    for (int i = 0; i < N; i++) {
      snprintf(key, sizeof key, "k.%d", dup && i == N - 1 ? 0 : i);
      str(&b, key);
      u32(&b, 4);
      u32(&b, (uint32_t)i);
    }
    char err[256] = "";
    gguf_file *f = NULL;
    int rc = gguf_open_memory(b.p, b.n, &f, err, sizeof err);
    if (dup)
      CHECK(rc != 0 && !f && strstr(err, "'k.0' appears twice"),
            "200,000 keys, one twice: rc %d, '%s'", rc, err);
    else
      CHECK(rc == 0 && gguf_n_kv(f) == N, "200,000 keys: %s", err);
    uint32_t v = 0;
    if (f)
      CHECK(gguf_get_u32(f, "k.199999", &v, err, sizeof err) == 0 && v == N - 1,
            "last of 200,000 keys");
    gguf_close(f);
    free(b.p);
  }
}

static void test_special_files(void) {
  char err[512];
  gguf_file *f = NULL;
  CHECK(gguf_open("/tmp", &f, err, sizeof err) != 0 &&
            strstr(err, "not a regular file"),
        "directory: %s", err);
  CHECK(gguf_open("/dev/zero", &f, err, sizeof err) != 0 &&
            strstr(err, "not a regular file"),
        "/dev/zero: %s", err);
  CHECK(gguf_open("/nonexistent/x.gguf", &f, err, sizeof err) != 0 &&
            strstr(err, "/nonexistent/x.gguf"),
        "missing file: %s", err);
  char fifo[64];
  snprintf(fifo, sizeof fifo, "/tmp/test_gguf_fifo_%d", (int)getpid());
  unlink(fifo);
  if (mkfifo(fifo, 0600) == 0) {
    CHECK(gguf_open(fifo, &f, err, sizeof err) != 0 &&
              strstr(err, "not a regular file"),
          "fifo: %s", err);
    unlink(fifo);
  }
  char path[64];
  snprintf(path, sizeof path, "/tmp/test_gguf_%d.gguf", (int)getpid());
  FILE *o = fopen(path, "wb");
  if (o) {
    fclose(o);
    CHECK(gguf_open(path, &f, err, sizeof err) != 0 && strstr(err, "empty"),
          "empty file: %s", err);
    spec s = valid();
    buf b = build(&s);
    o = fopen(path, "wb");
    fwrite(b.p, 1, b.n, o);
    fclose(o);
    CHECK(gguf_open(path, &f, err, sizeof err) == 0 &&
              gguf_find_tensor(f, "b") != NULL,
          "file on disk: %s", err);
    gguf_close(f);
    free(b.p);
    unlink(path);
  }
}

/* ---- dequantisation against the definitions, in double ------------------ */

static double half(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double s = (h & 0x8000) ? -1 : 1;
  if (e == 0)
    return s * ldexp(m, -24);
  if (e == 31)
    return m ? NAN : s * INFINITY;
  return s * ldexp(1024 + m, e - 25);
}

static void test_dequant(void) {
  /* f16: all 65536 values */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t x = (uint16_t)h;
    float out;
    gguf_dequantize(GGUF_DTYPE_F16, &x, 1, &out);
    double r = half(x);
    if (isnan(r) ? !isnan(out)
                 : (double)out != r || !signbit(out) != !signbit(r))
      bad++;
  }
  CHECK(bad == 0, "f16: %d of 65536 values differ", bad);
  bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t x = (uint16_t)h;
    float out;
    uint32_t u = h << 16;
    float r;
    memcpy(&r, &u, 4);
    gguf_dequantize(GGUF_DTYPE_BF16, &x, 1, &out);
    if (memcmp(&out, &r, 4) != 0)
      bad++;
  }
  CHECK(bad == 0, "bf16: %d values differ", bad);
  /* blocks with pseudo-random bytes (finite scales) */
  unsigned char blk[20 * 8];
  uint64_t st = 12345;
  float out[256];
  for (int trial = 0; trial < 200; trial++) {
    for (size_t i = 0; i < sizeof blk; i++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      blk[i] = (unsigned char)(st >> 33);
    }
    uint32_t types[3] = {GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1};
    size_t bsz[3] = {34, 18, 20};
    for (int t = 0; t < 3; t++) {
      for (int k = 0; k < 4; k++) { /* clear exponent 31 of d and m */
        blk[k * bsz[t] + 1] &= 0x7b;
        blk[k * bsz[t] + 3] &= 0x7b;
      }
      gguf_dequantize(types[t], blk, 128, out);
      int diff = 0;
      for (int k = 0; k < 4; k++) {
        const unsigned char *p = blk + k * bsz[t];
        double d = half((uint16_t)(p[0] | p[1] << 8));
        double m = half((uint16_t)(p[2] | p[3] << 8));
        for (int j = 0; j < 32; j++) {
          double r;
          if (t == 0)
            r = (signed char)p[2 + j] * d;
          else if (t == 1)
            r = ((j < 16 ? p[2 + j] & 15 : p[2 + j - 16] >> 4) - 8) * d;
          else
            r = (j < 16 ? p[4 + j] & 15 : p[4 + j - 16] >> 4) * d + m;
          if ((float)r != out[k * 32 + j])
            diff++;
        }
      }
      CHECK(diff == 0, "%s trial %d: %d values differ",
            gguf_dtype_name(types[t]), trial, diff);
    }
  }
  CHECK(gguf_dequantize(GGUF_DTYPE_Q4_0, blk, 31, out) != 0, "partial block");
  CHECK(gguf_dequantize(77, blk, 32, out) != 0, "unknown type");
  CHECK(gguf_dtype_bytes(GGUF_DTYPE_Q4_1, 64) == 40 &&
            gguf_dtype_bytes(GGUF_DTYPE_Q8_0, 33) == 0 &&
            gguf_dtype_bytes(GGUF_DTYPE_F32, INT64_MAX) == 0,
        "dtype bytes");
}

int main(void) {
  test_valid();
  test_malformed();
  test_many_keys();
  test_special_files();
  test_dequant();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
