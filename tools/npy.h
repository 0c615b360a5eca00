/*
 * npy.h - a small, hostile-input-safe reader and writer for NumPy .npy files.
 *
 * Reads format versions 1.0, 2.0 and 3.0 with a strictly parsed header dict
 * ('descr', 'fortran_order', 'shape'), little-endian float32, float16, int32
 * and bool data, C order, up to NPY_MAX_DIMS dimensions. Every length is
 * checked against the input before it is used; element counts and byte sizes
 * are overflow-checked in 64 bits; the data must fill the file exactly.
 *
 * All functions return 0 on success or -1 with a one-line reason (no newline)
 * written to err (when err is not NULL and errsz > 0).
 */
#ifndef ATTN_TOOLS_NPY_H
#define ATTN_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 4

/* Largest header (the dict text) accepted, in bytes. */
#define NPY_MAX_HEADER_LEN (1u << 20)

typedef enum npy_dtype {
  NPY_DTYPE_F32 = 0,  /* '<f4' */
  NPY_DTYPE_F16 = 1,  /* '<f2', raw IEEE half bits as uint16_t */
  NPY_DTYPE_BOOL = 2, /* '|b1', one byte, 0 or 1 */
  NPY_DTYPE_I32 = 3   /* '<i4' */
} npy_dtype;

typedef struct npy_array {
  npy_dtype dtype;
  int ndim;                    /* 0..NPY_MAX_DIMS; 0 is a scalar    */
  int64_t shape[NPY_MAX_DIMS]; /* shape[ndim..] are 1               */
  int64_t count;               /* product of shape (1 for a scalar) */
  size_t elem_size;            /* bytes per element                 */
  void *data;                  /* count * elem_size bytes, C order,
                                  host byte order; never NULL after a
                                  successful read                   */
} npy_array;

/* Bytes of one element, 0 for an unknown dtype. */
size_t npy_dtype_size(npy_dtype dtype);
/* The numpy descr of dtype ("<f4", ...), or "?" for an unknown one. */
const char *npy_dtype_descr(npy_dtype dtype);

/* Parses a whole .npy image of len bytes. On failure *out is zeroed. */
int npy_read_mem(const void *buf, size_t len, npy_array *out, char *err,
                 size_t errsz);

/* Reads a .npy file. Error messages start with the path. */
int npy_read(const char *path, npy_array *out, char *err, size_t errsz);

/* Frees out->data and zeroes *out. Accepts NULL and zeroed arrays. */
void npy_free(npy_array *arr);

/* Writes data (count elements of dtype, C order, host byte order) as a
 * version 1.0 .npy file with the given shape (ndim 0..NPY_MAX_DIMS). */
int npy_write(const char *path, npy_dtype dtype, const void *data, int ndim,
              const int64_t *shape, char *err, size_t errsz);

/* npy_write for float32. */
int npy_write_f32(const char *path, const float *data, int ndim,
                  const int64_t *shape, char *err, size_t errsz);

#endif /* ATTN_TOOLS_NPY_H */
