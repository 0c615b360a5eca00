/* dropout_vec.c's entry points: philox.h's attn_dropout_apply (mul = 1,
 * x[r][c] *= factor) or attn_dropout_fill (mul = 0, x[r][c] = factor) on
 * rows i0 .. i0 + rows - 1 (row r at x + r ldx), keys j0 .. j0 + n - 1, of
 * (seed, p, b, h), compiled per ISA. */
#ifndef ATTN_TEST_DROPOUT_VEC_H
#define ATTN_TEST_DROPOUT_VEC_H

#include <stdint.h>

typedef void (*dropout_vec_fn)(uint64_t seed, float p, int64_t b, int64_t h,
                               int64_t i0, int rows, int64_t j0, float *x,
                               int64_t ldx, int n, int mul);

void dropout_vec_rows_generic(uint64_t seed, float p, int64_t b, int64_t h,
                              int64_t i0, int rows, int64_t j0, float *x,
                              int64_t ldx, int n, int mul);
void dropout_vec_rows_avx2(uint64_t seed, float p, int64_t b, int64_t h,
                           int64_t i0, int rows, int64_t j0, float *x,
                           int64_t ldx, int n, int mul);
void dropout_vec_rows_avx512(uint64_t seed, float p, int64_t b, int64_t h,
                             int64_t i0, int rows, int64_t j0, float *x,
                             int64_t ldx, int n, int mul);

#endif
