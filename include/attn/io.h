/*
 * attn/io.h — libattn's I/O layer: NumPy .npy files.
 *
 *     #include <attn/io.h>        (installed next to attn.h)
 *
 *     attn_npy a;
 *     char err[256];
 *     if (attn_npy_read("q.npy", &a, err, sizeof err) != ATTN_OK)
 *       fprintf(stderr, "%s\n", err);        // "q.npy: truncated data: ..."
 *     ...                                     // a.data: a.count elements
 *     attn_npy_free(&a);
 *
 * Format:
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html Read:
 * versions 1.0, 2.0 and 3.0; dtypes '<f4', '<f2', '|b1', '<i4' and
 * '<i8' (numpy's spelling on every little-endian machine); C order; 0 to
 * ATTN_NPY_MAX_DIMS dimensions. Written: version 1.0, the data 64-byte
 * aligned in the file, as numpy writes it.
 *
 * Every input is hostile. The header is read and checked before any data:
 * the payload size is computed with overflow checks and then exactly that
 * many bytes are read; nothing is allocated beyond what the header declares
 * and, for a regular file, before its size is known to match. Rejected with
 * a precise message: bad magic or version, a header length past the end, a
 * malformed header dict, big-endian, object, structured or other dtypes,
 * Fortran order, negative or overflowing shapes, a file shorter than its
 * header says, and trailing bytes after the data. Streams (pipes, FIFOs,
 * character devices such as /dev/zero) are read the same way: they fail at
 * the first wrong byte and their buffer grows only as data arrives (opening
 * a FIFO waits for its writer, as with any reader).
 *
 * All functions return ATTN_OK or a negative attn_status, never print, and
 * on failure write a one-line reason (no newline, control characters shown
 * as '?') into err when err is not NULL and err_size > 0. Status codes:
 *   ATTN_ERR_NULL_POINTER      a required pointer argument is NULL
 *   ATTN_ERR_INVALID_ARGUMENT  the file cannot be opened, read or written,
 *                              or is not a well-formed .npy file
 *   ATTN_ERR_INVALID_DTYPE     a well-formed file of an unsupported dtype
 *                              (or fortran_order=True)
 *   ATTN_ERR_INVALID_SHAPE     negative, too many, or too large dimensions
 *   ATTN_ERR_OVERFLOW          the element count or byte size overflows
 *   ATTN_ERR_OUT_OF_MEMORY     the data buffer cannot be allocated
 * Thread safety: the functions keep no state; calls on different arrays
 * may run concurrently.
 */
#ifndef ATTN_IO_H
#define ATTN_IO_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most dimensions a .npy array may have here. */
#define ATTN_NPY_MAX_DIMS 8
/* Largest header (the dict text after the preamble) accepted, in bytes. */
#define ATTN_NPY_MAX_HEADER_LEN (1u << 20)

/*
 * Element types of .npy files. The values shared with attn_dtype are equal
 * to it (an attn_npy_dtype of F32, F16 or BOOL may be cast to attn_dtype);
 * the integer types have no attn_dtype.
 */
typedef enum attn_npy_dtype {
  ATTN_NPY_F32 = 0,  /* '<f4' float32                                   */
  ATTN_NPY_F16 = 2,  /* '<f2' IEEE half, raw bits as uint16_t           */
  ATTN_NPY_BOOL = 3, /* '|b1' one byte, nonzero = true (not checked)     */
  ATTN_NPY_I32 = 16, /* '<i4' int32 (lengths, cu_seqlens)               */
  ATTN_NPY_I64 = 17  /* '<i8' int64 (positions)                         */
} attn_npy_dtype;

/* Bytes of one element of dtype, 0 for an unknown value. */
ATTN_API size_t attn_npy_dtype_size(attn_npy_dtype dtype);
/* numpy's little-endian descr of dtype ("<f4", "|b1", ...), "?" if unknown. */
ATTN_API const char *attn_npy_dtype_descr(attn_npy_dtype dtype);

/* An array read from a .npy file. Owns data; release with attn_npy_free. */
typedef struct attn_npy {
  attn_npy_dtype dtype;
  int ndim;                         /* 0..ATTN_NPY_MAX_DIMS; 0 = scalar   */
  int64_t shape[ATTN_NPY_MAX_DIMS]; /* sizes; shape[ndim..] are 1         */
  int64_t count;                    /* product of shape (1 for a scalar)  */
  size_t elem_size;                 /* attn_npy_dtype_size(dtype)         */
  size_t nbytes;                    /* count * elem_size                  */
  void *data; /* nbytes bytes, C order, host byte order; never NULL after a
                 successful call (a 1-byte block when nbytes is 0)        */
} attn_npy;

/* Reads the .npy file at path (a regular file or a stream). On failure *out
 * is zeroed and err starts with the path: "q.npy: bad magic ...". A FIFO
 * is read as it arrives; one that has no writer within a second of the
 * open reads as empty (an error), rather than waiting for one forever. */
ATTN_API attn_status attn_npy_read(const char *path, attn_npy *out, char *err,
                                   size_t err_size);

/* Parses a whole .npy image of n bytes from memory (for fuzzing, bindings,
 * archives). The image must be exactly one array: trailing bytes are an
 * error as in attn_npy_read. On failure *out is zeroed. */
ATTN_API attn_status attn_npy_parse(const void *bytes, size_t n, attn_npy *out,
                                    char *err, size_t err_size);

/* Frees a->data and zeroes *a. Accepts NULL and zeroed arrays. */
ATTN_API void attn_npy_free(attn_npy *a);

/* Writes data (the product of shape elements of dt, C order, host byte
 * order) as a .npy file at path, created or truncated. ndim 0..
 * ATTN_NPY_MAX_DIMS; shape may be NULL when ndim is 0. Errors start with
 * the path. */
ATTN_API attn_status attn_npy_write(const char *path, attn_npy_dtype dt,
                                    int ndim, const int64_t *shape,
                                    const void *data, char *err,
                                    size_t err_size);

/* Encodes the same .npy image into memory: writes it to buf (capacity cap)
 * and its length to *len. With buf NULL (cap ignored) only *len is set, to
 * the bytes needed. A cap below that is ATTN_ERR_WORKSPACE_TOO_SMALL, with
 * *len set. */
ATTN_API attn_status attn_npy_encode(attn_npy_dtype dt, int ndim,
                                     const int64_t *shape, const void *data,
                                     void *buf, size_t cap, size_t *len,
                                     char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_IO_H */
