/*
 * ring_views.c - the ring's views of the caller's tensors and of its own
 * slices: a [batch, n, heads, dim] view of a buffer, a run of rows of a
 * view, one element as a float, packing a slice into the ring's dense
 * buffers and storing the merged rows back into the caller's layout.
 * (Split out of ring_plan.c, which plans a call; these are what the
 * forward and backward use while the slices travel.)
 */
#include "ring_internal.h"

#include <string.h>

attn_tensor ring_view(void *data, attn_dtype dtype, int64_t batch, int64_t n,
                      int64_t heads, int64_t dim, int64_t row0, int64_t len) {
  attn_tensor t = attn_tensor_bshd(data, dtype, batch, n, heads, dim);
  t.data = (char *)data + (size_t)(row0 * heads * dim) * attn_dtype_size(dtype);
  t.shape[1] = len;
  return t;
}

attn_tensor ring_rows(const attn_tensor *t, int64_t row0, int64_t len) {
  attn_tensor r = *t;
  r.data = (char *)t->data +
           (size_t)(row0 * t->stride[1]) * attn_dtype_size(t->dtype);
  r.shape[1] = len;
  return r;
}

static size_t at(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                 int64_t c) {
  return (size_t)(b * t->stride[0] + i * t->stride[1] + h * t->stride[2] +
                  c * t->stride[3]);
}

float ring_load(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                int64_t c) {
  const size_t x = at(t, b, i, h, c);
  switch (t->dtype) {
  case ATTN_DTYPE_BF16:
    return attn_bf16_to_f32(((const uint16_t *)t->data)[x]);
  case ATTN_DTYPE_F16:
    return attn_f16_to_f32(((const uint16_t *)t->data)[x]);
  default:
    return ((const float *)t->data)[x];
  }
}

void ring_pack(const attn_tensor *t, void *dst) {
  const size_t es = attn_dtype_size(t->dtype);
  char *out = dst;
  const int64_t B = t->shape[0], N = t->shape[1], H = t->shape[2],
                C = t->shape[3];
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < N; i++)
      for (int64_t h = 0; h < H; h++) {
        const char *src = (const char *)t->data + at(t, b, i, h, 0) * es;
        if (t->stride[3] == 1 || C == 1) {
          memcpy(out, src, (size_t)C * es);
        } else {
          for (int64_t c = 0; c < C; c++)
            memcpy(out + (size_t)c * es, src + (size_t)(c * t->stride[3]) * es,
                   es);
        }
        out += (size_t)C * es;
      }
}

void ring_store(const float *src, const attn_tensor *dst, int64_t row0,
                int64_t len) {
  const int64_t B = dst->shape[0], H = dst->shape[2], C = dst->shape[3];
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < len; i++)
      for (int64_t h = 0; h < H; h++) {
        const float *s = src + ((b * len + i) * H + h) * C;
        for (int64_t c = 0; c < C; c++) {
          const size_t x = at(dst, b, row0 + i, h, c);
          switch (dst->dtype) {
          case ATTN_DTYPE_BF16:
            ((uint16_t *)dst->data)[x] = attn_f32_to_bf16(s[c]);
            break;
          case ATTN_DTYPE_F16:
            ((uint16_t *)dst->data)[x] = attn_f32_to_f16(s[c]);
            break;
          default:
            ((float *)dst->data)[x] = s[c];
          }
        }
      }
}

size_t ring_slice_bytes(const ring_plan *pl, int64_t n) {
  return (size_t)(pl->batch * n * pl->hkv) *
         ((size_t)pl->d * pl->esk + (size_t)pl->dv * pl->esv);
}

void ring_blob_views(const ring_plan *pl, char *blob, int64_t n, int64_t row0,
                     int64_t len, attn_tensor *k, attn_tensor *v) {
  const attn_params *p = &pl->p;
  *k = ring_view(blob, p->k.dtype, pl->batch, n, pl->hkv, pl->d, row0, len);
  char *vbase = blob + (size_t)(pl->batch * n * pl->hkv * pl->d) * pl->esk;
  *v = ring_view(vbase, p->v.dtype, pl->batch, n, pl->hkv, pl->dv, row0, len);
}
