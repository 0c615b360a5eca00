/*
 * safetensors_write.h - writes checkpoints in the safetensors format
 * (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [r, c], "data_offsets": [a, b]}, ...}
 * padded with spaces so the data starts 8-byte aligned, then the tensors'
 * bytes back to back (little-endian, C order), in the order given.
 *
 * The reader (safetensors.h) is another file; stwrite_read_f32 below is the
 * trainers' own minimal reader of the files written here (tensor by name,
 * F32 only), used to load a checkpoint back.
 */
#ifndef ATTN_IO_SAFETENSORS_WRITE_H
#define ATTN_IO_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef enum stwrite_dtype {
  STWRITE_F32 = 0, /* "F32" */
  STWRITE_I32 = 1, /* "I32" */
  STWRITE_I64 = 2, /* "I64" */
  STWRITE_U8 = 3   /* "U8"  */
} stwrite_dtype;

typedef struct stwrite_tensor {
  const char *name; /* printable ASCII other than '"' and '\\'; unique */
  stwrite_dtype dtype;
  int ndim;         /* 0..4 */
  int64_t shape[4]; /* sizes >= 0 */
  const void *data; /* product of shape elements */
} stwrite_tensor;

/* Writes n tensors and n_meta metadata pairs (meta[2i] key, meta[2i+1]
 * value, same character rule as names) to path. Returns 0, or -1 with a
 * one-line reason in err (a bad name, dtype or shape, a duplicate name, an
 * I/O error). */
int stwrite_file(const char *path, const stwrite_tensor *t, int n,
                 const char *const *meta, int n_meta, char *err,
                 size_t err_size);

/* Reads the F32 tensor called name from a file of this writer's shape into
 * out (count floats, which must equal the tensor's element count).
 * Returns 0, or -1 with a reason in err (not found, other dtype or size, a
 * malformed or truncated file). */
int stwrite_read_f32(const char *path, const char *name, float *out,
                     int64_t count, char *err, size_t err_size);

/* Copies the metadata value of key into out (size bytes, NUL-terminated).
 * Returns 0, or -1 with a reason in err. */
int stwrite_read_meta(const char *path, const char *key, char *out, size_t size,
                      char *err, size_t err_size);

#endif
