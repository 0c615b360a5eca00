/*
 * safetensors.h - reader of Hugging Face's .safetensors files, read whole
 * into memory (not mapped: another process truncating a mapped file would
 * fault the reader). Every file is hostile input.
 *
 *   [8 bytes]  N, the header's length (u64, little-endian)
 *   [N bytes]  a JSON object: "name": {"dtype": "F32", "shape": [2, 3],
 *              "data_offsets": [begin, end]}, ..., and an optional
 *              "__metadata__": {"key": "string", ...}
 *   [rest]     the data; offsets count from its first byte
 *
 * Checks (the reference implementation's, safetensors' validate): N at
 * most ST_MAX_HEADER and inside the file; the header is strict JSON
 * (json.h) and an object; every tensor has exactly dtype, shape and
 * data_offsets, a known dtype, at most ST_MAX_DIMS non-negative
 * dimensions whose product times the element size fits in 64 bits and
 * equals end - begin; names are unique; sorted by begin, the tensors tile
 * the data exactly (the first starts at 0, each starts where the previous
 * ended: no gap, no overlap) and the last ends at the end of the file.
 * Every failure is -1 with one line in err, prefixed with the path when
 * there is one.
 */
#ifndef ATTN_IO_SAFETENSORS_H
#define ATTN_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_HEADER ((uint64_t)100000000) /* bytes, as the reference */
#define ST_MAX_DIMS 8

typedef enum st_dtype {
  ST_BOOL,
  ST_U8,
  ST_I8,
  ST_F8_E5M2,
  ST_F8_E4M3,
  ST_I16,
  ST_U16,
  ST_F16,
  ST_BF16,
  ST_I32,
  ST_U32,
  ST_F32,
  ST_F64,
  ST_I64,
  ST_U64,
  ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
  const char *name; /* NUL-terminated, owned by the file                */
  st_dtype dtype;
  int ndim;                   /* 0..ST_MAX_DIMS (0: a scalar)       */
  int64_t shape[ST_MAX_DIMS]; /* dimensions; unused ones are 1      */
  int64_t count;              /* product of shape                   */
  const unsigned char *data;  /* inside the file's bytes; unaligned */
  uint64_t nbytes;            /* count * element size               */
} st_tensor;

typedef struct st_file {
  st_tensor *tensors; /* (n) sorted by name                          */
  int64_t n;
  const unsigned char *base; /* the whole file (size bytes)          */
  size_t size;
  void *map;   /* the file read by st_open (owned) or NULL         */
  char *names; /* storage of the names                             */
} st_file;

/* Bytes of one element; 0 for an unknown value. */
size_t st_dtype_size(st_dtype dt);
/* "F32", "BF16", ... */
const char *st_dtype_name(st_dtype dt);

/* Reads and checks the file at path (a regular file: a directory, device
 * or FIFO is refused before anything is read). 0, or -1 with f zeroed. */
int st_open(const char *path, st_file *f, char *err, size_t err_size);
/* Checks an image of n bytes in memory (not copied: it must outlive f). */
int st_parse(const void *bytes, size_t n, st_file *f, char *err,
             size_t err_size);
/* Frees; accepts a zeroed f. */
void st_close(st_file *f);

/* The tensor called name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

/* Copies tensor t (F32, F16 or BF16) into dst as f32, checking that it
 * has count elements and the expected shape (ndim dims; NULL: any).
 * 0, or -1 with the reason (naming the tensor) in err. */
int st_read_f32(const st_tensor *t, int ndim, const int64_t *shape, float *dst,
                int64_t count, char *err, size_t err_size);

#endif
