/*
 * gguf.h - a reader of GGUF v3 files (llama.cpp's model format), treating
 * its input as hostile.
 *
 * Layout (little-endian; ggml's docs/gguf.md):
 *
 *   magic "GGUF" | u32 version (3) | u64 n_tensors | u64 n_kv
 *   n_kv x   { string key | u32 type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 type |
 *                 u64 offset }
 *   padding to general.alignment (default 32)
 *   data: tensor i at data + offset_i (a multiple of the alignment)
 *
 *   string = u64 length | bytes (no NUL);  array = u32 type | u64 n | n x
 *
 * Every count, length, type, shape and offset is checked against the bytes
 * that are really there before it is used (with overflow checks), so a
 * malformed or truncated file gives -1 and a one-line reason, never a
 * crash. Arrays of arrays are refused (no model uses them). Tensors have
 * 1 to 4 dimensions, each >= 1; ne[0] is the fastest-varying, so a 2-D
 * tensor ne = [in, out] is the row-major matrix [out, in] (PyTorch's
 * nn.Linear layout). A file is read whole into memory (regular files
 * only; not mapped, so that another process truncating it cannot fault
 * the reader); gguf_open_memory reads a caller's buffer in place.
 */
#ifndef ATTN_IO_GGUF_H
#define ATTN_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

typedef enum gguf_type {
  GGUF_TYPE_UINT8 = 0,
  GGUF_TYPE_INT8 = 1,
  GGUF_TYPE_UINT16 = 2,
  GGUF_TYPE_INT16 = 3,
  GGUF_TYPE_UINT32 = 4,
  GGUF_TYPE_INT32 = 5,
  GGUF_TYPE_FLOAT32 = 6,
  GGUF_TYPE_BOOL = 7,
  GGUF_TYPE_STRING = 8,
  GGUF_TYPE_ARRAY = 9,
  GGUF_TYPE_UINT64 = 10,
  GGUF_TYPE_INT64 = 11,
  GGUF_TYPE_FLOAT64 = 12
} gguf_type;

/* Tensor types this reader knows (ggml's numbering). */
typedef enum gguf_dtype {
  GGUF_DTYPE_F32 = 0,
  GGUF_DTYPE_F16 = 1,
  GGUF_DTYPE_Q4_0 = 2, /* blocks of 32: f16 d, 16 bytes of nibbles q;
                          x = (q - 8) d                               */
  GGUF_DTYPE_Q4_1 = 3, /* blocks of 32: f16 d, f16 m, 16 bytes; x = q d + m */
  GGUF_DTYPE_Q8_0 = 8, /* blocks of 32: f16 d, 32 x i8 q; x = q d         */
  GGUF_DTYPE_BF16 = 30
} gguf_dtype;

#define GGUF_MAX_DIMS 4

typedef struct gguf_str {
  const char *s; /* points into the file; NOT NUL-terminated */
  size_t len;
} gguf_str;

typedef struct gguf_kv {
  gguf_str key;
  gguf_type type;
  gguf_type arr_type;  /* ARRAY: element type (never ARRAY)        */
  uint64_t arr_n;      /* ARRAY: element count                     */
  const uint8_t *data; /* the value (ARRAY: its first element)     */
  size_t size;         /* bytes of the value (ARRAY: of elements)  */
} gguf_kv;

typedef struct gguf_tensor {
  gguf_str name;
  uint32_t n_dims;           /* 1..GGUF_MAX_DIMS                     */
  int64_t ne[GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1     */
  gguf_dtype dtype;          /* one of gguf_dtype                    */
  int64_t n_elements;        /* product of ne                        */
  uint64_t offset;           /* from the start of the data section   */
  const uint8_t *data;       /* n_bytes bytes inside the file        */
  size_t n_bytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and reads path; 0, or -1 with the reason in err (prefixed by path). */
int gguf_open(const char *path, gguf_file **out, char *err, size_t err_size);
/* Parses n bytes at data in place (they must outlive the handle). */
int gguf_open_memory(const void *data, size_t n, gguf_file **out, char *err,
                     size_t err_size);
/* Accepts NULL. */
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
int64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);
int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);

/* Lookups by name; NULL when absent. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed metadata: 0, or -1 with the reason in err (absent key, wrong type,
 * value out of range). get_u32 accepts any integer type whose value fits. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, char *err,
                 size_t err_size);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, char *err,
                 size_t err_size);
int gguf_get_bool(const gguf_file *f, const char *key, int *out, char *err,
                  size_t err_size);
int gguf_get_string(const gguf_file *f, const char *key, gguf_str *out,
                    char *err, size_t err_size);
/* A string array: *out (malloc'd, free it) holds *n views into the file. */
int gguf_get_string_array(const gguf_file *f, const char *key, gguf_str **out,
                          uint64_t *n, char *err, size_t err_size);
/* An INT32 (or UINT32 < 2^31) array, copied into *out (malloc'd). */
int gguf_get_i32_array(const gguf_file *f, const char *key, int32_t **out,
                       uint64_t *n, char *err, size_t err_size);

/* Name of a tensor type ("q4_1"), or NULL when unknown. */
const char *gguf_dtype_name(uint32_t dtype);
/* Bytes of n elements of dtype (n a multiple of its block); 0 when dtype
 * is unknown, n is not a whole number of blocks, or it overflows. */
size_t gguf_dtype_bytes(uint32_t dtype, int64_t n);

/* Dequantises n elements of dtype at src (gguf_dtype_bytes(dtype, n)
 * bytes, any alignment) into dst; 0, or -1 for an unknown dtype or an n
 * that is not a whole number of blocks. */
int gguf_dequantize(uint32_t dtype, const void *src, int64_t n, float *dst);
/* The whole tensor into dst (count floats, which must be n_elements). */
int gguf_tensor_f32(const gguf_tensor *t, float *dst, int64_t count, char *err,
                    size_t err_size);

#endif
