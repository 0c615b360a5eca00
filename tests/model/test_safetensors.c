/*
 * test_safetensors.c - the safetensors reader (src/io/safetensors.c) and
 * its JSON parser (src/io/json.c): valid files made here and read back
 * (F32, F16, BF16, every dtype's size, scalars, empty tensors, metadata),
 * then many malformed ones, each of which must fail with a one-line
 * message: truncations at every byte, bad JSON, bad fields, offsets out
 * of range, overlapping, gaps, wrong sizes, huge lengths, special files.
 */
#define _XOPEN_SOURCE 700
#include "json.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;

static void check(int ok, const char *what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL: %s\n", what);
  }
}

/* header text + data bytes -> a safetensors image (malloc'd). */
static unsigned char *image(const char *header, const void *data,
                            size_t data_len, size_t *n) {
  size_t hl = strlen(header);
  *n = 8 + hl + data_len;
  unsigned char *b = malloc(*n);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, header, hl);
  if (data_len)
    memcpy(b + 8 + hl, data, data_len);
  return b;
}

/* The image must fail to parse, with a one-line message containing want
 * (NULL: any). */
static void bad(const char *header, size_t data_len, const char *want,
                const char *what) {
  static unsigned char zeros[4096];
  size_t n;
  unsigned char *b = image(header, zeros, data_len, &n);
  st_file f;
  char err[256] = "";
  int rc = st_parse(b, n, &f, err, sizeof err);
  int ok = rc == -1 && f.n == 0 && f.tensors == NULL && err[0] &&
           !strchr(err, '\n') && (!want || strstr(err, want));
  if (!ok)
    printf("  %s: rc %d, err '%s'\n", what, rc, err);
  check(ok, what);
  free(b);
}

static void test_valid(void) {
  /* a: F32 [2, 3]; b: F16 [2]; c: BF16 [] (scalar); d: I64 [0] */
  float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
  uint16_t bh[2] = {0x3C00, 0xC000}; /* 1, -2 */
  uint16_t cb[1] = {0x4049};         /* bf16 3.140625 */
  unsigned char data[24 + 4 + 2];
  memcpy(data, a, 24);
  memcpy(data + 24, bh, 4);
  memcpy(data + 28, cb, 2);
  const char *h = "{\"__metadata__\": {\"format\": \"pt\"},"
                  " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], "
                  "\"data_offsets\": [0, 24]},"
                  "\"b\":{\"shape\":[2],\"dtype\":\"F16\",\"data_offsets\":[24,"
                  "28]},"
                  "\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[28,"
                  "30]},"
                  "\"d\\u00e9\":{\"dtype\":\"I64\",\"shape\":[0, 5],"
                  "\"data_offsets\":[30,30]}}   ";
  size_t n;
  unsigned char *b = image(h, data, sizeof data, &n);
  st_file f;
  char err[256] = "";
  int rc = st_parse(b, n, &f, err, sizeof err);
  check(rc == 0 && f.n == 4, "valid file parses");
  if (rc != 0) {
    printf("  %s\n", err);
    free(b);
    return;
  }
  const st_tensor *ta = st_find(&f, "a"), *tb = st_find(&f, "b");
  const st_tensor *tc = st_find(&f, "c"), *td = st_find(&f, "d\xc3\xa9");
  check(ta && tb && tc && td && !st_find(&f, "e") &&
            !st_find(&f, "__metadata__"),
        "st_find");
  check(ta && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 &&
            ta->count == 6 && ta->nbytes == 24 && ta->dtype == ST_F32,
        "F32 tensor shape");
  check(tc && tc->ndim == 0 && tc->count == 1, "scalar");
  check(td && td->count == 0 && td->nbytes == 0, "empty tensor");
  float out[6];
  const int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
  check(ta && st_read_f32(ta, 2, s23, out, 6, err, sizeof err) == 0 &&
            memcmp(out, a, 24) == 0,
        "F32 read");
  check(ta && st_read_f32(ta, 2, s32, out, 6, err, sizeof err) == -1 &&
            strstr(err, "shape"),
        "F32 read, wrong shape");
  check(tb && st_read_f32(tb, 1, NULL, out, 2, err, sizeof err) == 0 &&
            out[0] == 1.0f && out[1] == -2.0f,
        "F16 read");
  check(tc && st_read_f32(tc, 0, NULL, out, 1, err, sizeof err) == 0 &&
            out[0] == 3.140625f,
        "BF16 read");
  check(td && st_read_f32(td, 2, NULL, out, 0, err, sizeof err) == -1 &&
            strstr(err, "I64"),
        "I64 is not read as f32");
  st_close(&f);

  /* every proper prefix of the valid image fails cleanly */
  int all = 1;
  for (size_t k = 0; k < n; k++) {
    char e2[256] = "";
    if (st_parse(b, k, &f, e2, sizeof e2) != -1 || !e2[0] || strchr(e2, '\n')) {
      printf("  prefix of %zu bytes: '%s'\n", k, e2);
      all = 0;
    }
  }
  check(all, "every truncation fails with a message");
  /* one extra byte of data is an error too */
  unsigned char *b2 = malloc(n + 1);
  memcpy(b2, b, n);
  b2[n] = 0;
  check(st_parse(b2, n + 1, &f, err, sizeof err) == -1 &&
            strstr(err, "data has"),
        "trailing data");
  free(b2);

  /* the same file on disk */
  char path[] = "/tmp/attn_st_test_XXXXXX";
  int fd = mkstemp(path);
  int wrote = fd >= 0 && write(fd, b, n) == (ssize_t)n;
  if (fd >= 0)
    close(fd);
  check(wrote && st_open(path, &f, err, sizeof err) == 0 && f.n == 4 &&
            f.map != NULL,
        "st_open of a valid file");
  if (f.map) {
    const st_tensor *t = st_find(&f, "a");
    check(t && st_read_f32(t, 2, s23, out, 6, err, sizeof err) == 0 &&
              memcmp(out, a, 24) == 0,
          "mapped F32 read");
    st_close(&f);
  }
  /* truncate it on disk */
  check(truncate(path, (off_t)n - 1) == 0 &&
            st_open(path, &f, err, sizeof err) == -1 &&
            strncmp(err, path, strlen(path)) == 0,
        "st_open of a truncated file names the path");
  unlink(path);
  free(b);
}

static void test_every_dtype(void) {
  static const char *names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
                                "I16",  "U16", "F16", "BF16",    "I32",
                                "U32",  "F32", "F64", "I64",     "U64"};
  static const size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
  unsigned char data[3 * 8] = {0};
  int ok = 1;
  for (int k = 0; k < 15; k++) {
    char h[200];
    snprintf(
        h, sizeof h,
        "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
        names[k], 3 * sizes[k]);
    size_t n;
    unsigned char *b = image(h, data, 3 * sizes[k], &n);
    st_file f;
    char err[256];
    if (st_parse(b, n, &f, err, sizeof err) != 0 || f.n != 1 ||
        st_dtype_size(f.tensors[0].dtype) != sizes[k] ||
        strcmp(st_dtype_name(f.tensors[0].dtype), names[k]) != 0)
      ok = 0;
    st_close(&f);
    /* one byte short of the dtype's size */
    snprintf(
        h, sizeof h,
        "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
        names[k], 3 * sizes[k] - 1);
    free(b);
    b = image(h, data, 3 * sizes[k] - 1, &n);
    if (st_parse(b, n, &f, err, sizeof err) != -1 || !strstr(err, "needs"))
      ok = 0;
    free(b);
  }
  check(ok, "every dtype's size, and one byte short of it");
}

static void test_malformed(void) {
  static unsigned char short_img[7] = {0};
  st_file f;
  char err[256];
  check(st_parse(short_img, 7, &f, err, sizeof err) == -1 &&
            strstr(err, "truncated"),
        "under 8 bytes");
  check(st_parse(NULL, 0, &f, err, sizeof err) == -1, "empty input");
  /* header lengths: huge, past the end */
  unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0x7f, '{',  '}'};
  check(st_parse(huge, 16, &f, err, sizeof err) == -1 &&
            strstr(err, "over the limit"),
        "header length 2^63");
  unsigned char past[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
  check(st_parse(past, 12, &f, err, sizeof err) == -1 &&
            strstr(err, "truncated"),
        "header length past the end");
  const char *T = "\"dtype\":\"F32\",\"shape\":[1]";
  char h[512];
  bad("", 0, "not a JSON object", "empty header");
  bad("[1,2]", 0, "not a JSON object", "header is an array");
  bad("{", 0, NULL, "unterminated object");
  bad("{}x", 0, "trailing", "trailing characters");
  bad("{\"a\":1,}", 0, NULL, "trailing comma");
  bad("{'a':1}", 0, NULL, "single quotes");
  bad("{\"a\":01}", 0, NULL, "leading zero");
  bad("{\"a\":\"x\ty\"}", 0, "control", "raw tab in a string");
  bad("{\"a\":\"\\q\"}", 0, "escape", "bad escape");
  bad("{\"a\":\"\\ud800\"}", 0, "escape", "lone surrogate escape");
  bad("{\"\xff\":1}", 0, "UTF-8", "invalid UTF-8");
  bad("{\"\xc0\xaf\":1}", 0, "UTF-8", "overlong UTF-8");
  bad("{\"a\":{\"dtype\":\"F32\"}/*c*/}", 0, NULL, "a comment");
  bad("{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
      4, "U+0000", "NUL in a name");
  snprintf(h, sizeof h, "{\"a\":{%s}}", T);
  bad(h, 4, "exactly", "missing data_offsets");
  snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,4],\"x\":1}}", T);
  bad(h, 4, "exactly", "an extra field");
  bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "unknown dtype", "unknown dtype");
  bad("{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "unknown dtype", "dtype not a string");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
      "shape[0]", "negative dimension");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
      "shape[0]", "fractional dimension");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
      "shape", "shape not an array");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
      "\"data_offsets\":[0,4]}}",
      4, "at most", "nine dimensions");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
      "\"data_offsets\":[0,4]}}",
      4, "overflows", "shape overflows");
  bad("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
      "\"data_offsets\":[0,4]}}",
      4, "overflows", "size overflows");
  bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
      "\"data_offsets\":[0,4]}}",
      4, "shape[0]", "dimension beyond int64");
  snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]}}", T);
  bad(h, 8, "needs 4", "offsets span the wrong size");
  snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[4,0]}}", T);
  bad(h, 4, "begin <= end", "end before begin");
  snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[-4,0]}}", T);
  bad(h, 4, "begin <= end", "negative offset");
  snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0]}}", T);
  bad(h, 4, "data_offsets", "one offset");
  snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[8,12]}}", T);
  bad(h, 4, "past the end", "offsets out of range");
  snprintf(h, sizeof h,
           "{\"a\":{%s,\"data_offsets\":[9223372036854775800,"
           "9223372036854775804]}}",
           T);
  bad(h, 4, "past the end", "offsets near 2^63");
  snprintf(h, sizeof h,
           "{\"a\":{%s,\"data_offsets\":[0,4]},\"b\":{%s,\"data_offsets\":"
           "[2,6]}}",
           T, T);
  bad(h, 6, "overlaps", "overlapping tensors");
  snprintf(h, sizeof h,
           "{\"a\":{%s,\"data_offsets\":[0,4]},\"b\":{%s,\"data_offsets\":"
           "[0,4]}}",
           T, T);
  bad(h, 4, "overlaps", "two tensors on the same bytes");
  snprintf(h, sizeof h,
           "{\"a\":{%s,\"data_offsets\":[0,4]},\"b\":{%s,\"data_offsets\":"
           "[8,12]}}",
           T, T);
  bad(h, 12, "gap", "a gap between tensors");
  snprintf(h, sizeof h,
           "{\"a\":{%s,\"data_offsets\":[0,4]},\"a\":{%s,\"data_offsets\":"
           "[4,8]}}",
           T, T);
  bad(h, 8, "twice", "a name twice");
  bad("{\"__metadata__\":{\"k\":1}}", 0, "strings", "metadata not a string");
  bad("{\"__metadata__\":[]}", 0, "not an object", "metadata not an object");
  bad("{}", 4, "no tensor", "data without tensors");
  /* nesting deeper than the parser allows */
  char deep[300];
  size_t k = 0;
  deep[k++] = '{';
  const char *key = "\"a\":";
  memcpy(deep + k, key, 4);
  k += 4;
  for (int i = 0; i < 100; i++)
    deep[k++] = '[';
  for (int i = 0; i < 100; i++)
    deep[k++] = ']';
  deep[k++] = '}';
  deep[k] = 0;
  bad(deep, 0, "deeper", "nesting 101 deep");
  /* metadata and an empty file are fine */
  size_t n;
  unsigned char *b = image("{\"__metadata__\":{\"a\":\"b\"}}", NULL, 0, &n);
  check(st_parse(b, n, &f, err, sizeof err) == 0 && f.n == 0, "metadata only");
  st_close(&f);
  free(b);
}

/* Paths that are not regular files fail at once (a FIFO must not wait for
 * a writer). */
static void test_special_files(void) {
  st_file f;
  char err[256];
  check(st_open("/dev/zero", &f, err, sizeof err) == -1 &&
            strstr(err, "not a regular file"),
        "/dev/zero");
  check(st_open("/tmp", &f, err, sizeof err) == -1 &&
            strstr(err, "not a regular file"),
        "a directory");
  check(st_open("/nonexistent/x.safetensors", &f, err, sizeof err) == -1 &&
            strstr(err, "cannot open"),
        "a missing file");
  char fifo[64];
  snprintf(fifo, sizeof fifo, "/tmp/attn_st_fifo_%d", (int)getpid());
  unlink(fifo);
  if (mkfifo(fifo, 0600) == 0) {
    check(st_open(fifo, &f, err, sizeof err) == -1 &&
              strstr(err, "not a regular file"),
          "a FIFO");
    unlink(fifo);
  }
  char path[] = "/tmp/attn_st_empty_XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) {
    close(fd);
    check(st_open(path, &f, err, sizeof err) == -1 && strstr(err, "truncated"),
          "an empty file");
    unlink(path);
  }
}

static void test_json(void) {
  json_doc d;
  char err[160];
  const char *t = "{\"n\": -9223372036854775808, \"m\": 9223372036854775807,"
                  " \"o\": 9223372036854775808, \"f\": 1.5e-3, \"s\": "
                  "\"a\\\"b\\\\c\\/\\n\\u00e9\\ud83d\\ude00\", \"a\": [true, "
                  "false, null, {}], \"n\": 7}";
  int rc = json_parse(t, strlen(t), &d, err, sizeof err);
  check(rc == 0, "json: a document parses");
  if (rc != 0)
    return;
  int64_t v = 0;
  double x = 0;
  check(json_int64(&d, json_object_get(&d, 0, "n"), &v) == 0 && v == 7,
        "json: the last of a repeated key");
  check(json_int64(&d, json_object_get(&d, 0, "m"), &v) == 0 && v == INT64_MAX,
        "json: INT64_MAX");
  check(json_int64(&d, json_object_get(&d, 0, "o"), &v) == -1,
        "json: INT64_MAX + 1 is refused");
  check(json_int64(&d, json_object_get(&d, 0, "f"), &v) == -1 &&
            json_double(&d, json_object_get(&d, 0, "f"), &x) == 0 &&
            x == 1.5e-3,
        "json: a fraction is a double, not an integer");
  char s[64];
  int64_t sl = json_string_copy(&d, json_object_get(&d, 0, "s"), s, sizeof s);
  check(sl == 13 && strcmp(s, "a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80") == 0,
        "json: escapes and a surrogate pair decode");
  check(json_string_eq(&d, json_object_get(&d, 0, "s") - 1, "s"),
        "json: key comparison");
  int64_t a = json_object_get(&d, 0, "a");
  check(a > 0 && d.nodes[a].type == JSON_ARRAY && d.nodes[a].count == 4 &&
            d.nodes[a + 1].type == JSON_TRUE &&
            d.nodes[a + 4].type == JSON_OBJECT,
        "json: array children in order");
  check(json_object_get(&d, 0, "zz") == -1, "json: absent key");
  json_free(&d);
  static const char *bad_docs[] = {
      "",      " ",       "tru",       "nul",   "1.",   "-",   "1e",
      "[1 2]", "{\"a\"}", "[",         "\"abc", "[1,]", "{,}", "01",
      "+1",    ".5",      "\"\\u12\"", "1 2",   "[]]"};
  int ok = 1;
  for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
    err[0] = 0;
    if (json_parse(bad_docs[i], strlen(bad_docs[i]), &d, err, sizeof err) !=
            -1 ||
        !err[0] || d.nodes != NULL) {
      printf("  accepted: '%s'\n", bad_docs[i]);
      ok = 0;
    }
  }
  check(ok, "json: malformed documents are refused with a message");
}

int main(void) {
  test_valid();
  test_every_dtype();
  test_malformed();
  test_special_files();
  test_json();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
