/*
 * dense.c - the layer's projections through CBLAS (OpenBLAS), PyTorch's
 * nn.Linear convention: W is [out, in] row-major, y = x W^T + b.
 */
#include "layer_internal.h"

#include <cblas.h>
#include <string.h>

/* Y [m, n] = X [m, k] W^T + b */
void layer_linear(int64_t m, int64_t n, int64_t k, const float *x,
                  const float *w, const float *b, float *y) {
  float beta = 0.0f;
  if (b) {
    for (int64_t i = 0; i < m; i++)
      memcpy(y + i * n, b, (size_t)n * sizeof(float));
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k,
              1.0f, x, (int)k, w, (int)k, beta, y, (int)n);
}

/* dX [m, k] (+)= dY [m, n] W [n, k] */
void layer_linear_dx(int64_t m, int64_t n, int64_t k, const float *dy,
                     const float *w, float *dx, int accumulate) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n,
              1.0f, dy, (int)n, w, (int)k, accumulate ? 1.0f : 0.0f, dx,
              (int)k);
}

/* dW [n, k] += dY [m, n]^T X [m, k]; db [n] += sum over rows of dY */
void layer_linear_dw(int64_t m, int64_t n, int64_t k, const float *dy,
                     const float *x, float *dw, float *db) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k, (int)m,
              1.0f, dy, (int)n, x, (int)k, 1.0f, dw, (int)k);
  if (db) {
    /* rows summed in order into a double per column would need a buffer;
     * f32 sums in blocks of 64 rows keep the error short */
    for (int64_t i0 = 0; i0 < m; i0 += 64) {
      const int64_t i1 = i0 + 64 < m ? i0 + 64 : m;
      for (int64_t j = 0; j < n; j++) {
        float s = 0.0f;
        for (int64_t i = i0; i < i1; i++)
          s += dy[i * n + j];
        db[j] += s;
      }
    }
  }
}
