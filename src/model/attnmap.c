/* attnmap.c - attention probabilities from a trace (see attnmap.h). */
#include "attnmap.h"

#include "attn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t size, const char *fmt, ...) {
  if (err && size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int attnmap_row(const model_trace_layer *y, int64_t h, int64_t i, float *p) {
  if (!y || !p || !y->q || !y->k || !y->lse || h < 0 || h >= y->heads_q ||
      i < 0 || i >= y->seq || y->heads_kv <= 0 || y->heads_q % y->heads_kv)
    return -1;
  const int64_t d = y->head_dim, n = y->seq, nk = attnmap_keys(y);
  const int64_t g = h / (y->heads_q / y->heads_kv);
  const float *q = y->q + (i * y->heads_q + h) * d; /* (d) */
  const double lse = y->lse[h * n + i];
  /* keys 0..last visible (causal: bottom-right, as the kernel) */
  const int64_t last = y->causal ? i + nk - n : nk - 1;
  for (int64_t j = 0; j < nk; j++) {
    if (j > last || lse == -INFINITY) {
      p[j] = 0.0f;
      continue;
    }
    const float *k = y->k + (j * y->heads_kv + g) * d; /* (d) */
    double s = 0.0;
    for (int64_t c = 0; c < d; c++)
      s += (double)q[c] * (double)k[c];
    p[j] = (float)exp((double)y->scale * s - lse);
  }
  return 0;
}

int64_t attnmap_keys(const model_trace_layer *y) {
  return y->seq_k > 0 ? y->seq_k : y->seq;
}

int64_t attnmap_blocks(int64_t seq, int64_t block) {
  return block > 0 && seq > 0 ? (seq + block - 1) / block : 0;
}

/* The exact maps (block 1) straight from the saved LSE, row by row. */
static int pooled_exact(const model_trace_layer *y, float *out) {
  const int64_t n = y->seq, nk = attnmap_keys(y);
  for (int64_t h = 0; h < y->heads_q; h++)
    for (int64_t i = 0; i < n; i++)
      if (attnmap_row(y, h, i, out + (h * n + i) * nk) != 0)
        return -1;
  return 0;
}

int attnmap_pooled(const model_trace_layer *y, int64_t block, int threads,
                   float *out, char *err, size_t err_size) {
  if (!y || !out || !y->q || !y->k || block < 1 || y->seq < 1)
    return fail(err, err_size, "attention map: bad arguments");
  const int64_t n = y->seq, nk = attnmap_keys(y), hq = y->heads_q,
                hk = y->heads_kv;
  const int64_t nb = attnmap_blocks(n, block), nbk = attnmap_blocks(nk, block);
  if (block == 1 && n <= ATTNMAP_EXACT_MAX && nk <= ATTNMAP_EXACT_MAX) {
    if (pooled_exact(y, out) != 0)
      return fail(err, err_size, "attention map: bad trace layer");
    return 0;
  }
  if (nb > 256 || nbk > 256) {
    const int64_t m = n > nk ? n : nk;
    return fail(err, err_size,
                "attention map: %lld blocks a side (at most 256: use blocks "
                "of at least %lld tokens)",
                (long long)(nb > nbk ? nb : nbk), (long long)((m + 255) / 256));
  }
  /* v: (seq_k, heads_kv, nbk) one-hot by key block; o: (seq, heads_q, nbk) */
  float *v = calloc((size_t)(nk * hk * nbk), sizeof *v);
  float *o = calloc((size_t)(n * hq * nbk), sizeof *o);
  if (!v || !o) {
    free(v);
    free(o);
    return fail(err, err_size, "attention map: out of memory (%lld tokens)",
                (long long)n);
  }
  for (int64_t j = 0; j < nk; j++)
    for (int64_t g = 0; g < hk; g++)
      v[(j * hk + g) * nbk + j / block] = 1.0f;
  char msg[256] = "";
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(y->q, ATTN_DTYPE_F32, 1, n, hq, y->head_dim);
  p.k = attn_tensor_bshd(y->k, ATTN_DTYPE_F32, 1, nk, hk, y->head_dim);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, nk, hk, nbk);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, n, hq, nbk);
  p.scale = y->scale;
  p.causal = y->causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  p.num_threads = threads;
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_status st = attn_forward(NULL, &p);
  free(v);
  if (st != ATTN_OK) {
    free(o);
    return fail(err, err_size, "attention map: %s", msg);
  }
  /* out[h][a][b] = mean over the queries i of block a of o[i][h][b] */
  memset(out, 0, (size_t)(hq * nb * nbk) * sizeof *out);
  for (int64_t h = 0; h < hq; h++)
    for (int64_t a = 0; a < nb; a++) {
      const int64_t i0 = a * block, i1 = i0 + block < n ? i0 + block : n;
      float *m = out + (h * nb + a) * nbk; /* (nbk) */
      for (int64_t b = 0; b < nbk; b++) {
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++)
          s += o[(i * hq + h) * nbk + b];
        m[b] = (float)(s / (double)(i1 - i0));
      }
    }
  free(o);
  return 0;
}

void attnmap_view_free(attnmap_view *v) {
  if (!v)
    return;
  free(v->maps);
  free(v->zoom);
  memset(v, 0, sizeof *v);
  v->zoom_layer = -1;
}

const float *attnmap_view_map(const attnmap_view *v, int64_t layer,
                              int64_t head) {
  const int64_t per = v->n_blocks * v->n_blocks_k;
  return v->maps + (layer * v->heads_q + head) * per;
}

int attnmap_view_hidden(const attnmap_view *v, int64_t a, int64_t b) {
  if (!v->causal)
    return 0;
  int64_t last_q = a * v->block + v->block - 1; /* the block's last query */
  if (last_q > v->seq - 1)
    last_q = v->seq - 1;
  return b * v->block > last_q + v->seq_k - v->seq;
}

/* The zoom: exact rows of layer zl around token tok (see attnmap.h). */
static int view_zoom(attnmap_view *v, const model_trace *t, int64_t zl,
                     int64_t tok) {
  const int64_t n = v->seq;
  int64_t r0 = tok / v->block * v->block, rows = v->block;
  if (r0 + rows > n)
    rows = n - r0;
  if (rows > ATTNMAP_ZOOM_ROWS) {
    rows = ATTNMAP_ZOOM_ROWS;
    r0 = tok - rows / 2;
    if (r0 < 0)
      r0 = 0;
    if (r0 + rows > n)
      r0 = n - rows;
  }
  const int64_t nk = v->seq_k;
  v->zoom = malloc((size_t)(v->heads_q * rows * nk) * sizeof *v->zoom);
  if (!v->zoom)
    return -1;
  v->zoom_layer = zl;
  v->zoom_row0 = r0;
  v->zoom_rows = rows;
  for (int64_t h = 0; h < v->heads_q; h++)
    for (int64_t r = 0; r < rows; r++) {
      float *p = v->zoom + (h * rows + r) * nk;
      if (attnmap_row(&t->layers[zl], h, r0 + r, p) != 0)
        return -1;
    }
  return 0;
}

int attnmap_view_build(attnmap_view *v, const model_trace *t,
                       int64_t zoom_layer, int64_t zoom_token, int threads,
                       void (*progress)(int64_t done, int64_t total), char *err,
                       size_t err_size) {
  memset(v, 0, sizeof *v);
  v->zoom_layer = -1;
  if (!t || t->n_layers < 1 || !t->layers || t->layers[0].seq < 1)
    return fail(err, err_size, "attention map: empty trace");
  const model_trace_layer *y0 = &t->layers[0];
  for (int64_t l = 1; l < t->n_layers; l++) {
    const model_trace_layer *y = &t->layers[l];
    if (y->seq != y0->seq || attnmap_keys(y) != attnmap_keys(y0) ||
        y->heads_q != y0->heads_q || y->heads_kv != y0->heads_kv ||
        y->causal != y0->causal)
      return fail(err, err_size, "attention map: layer %lld differs in shape",
                  (long long)l);
  }
  const int64_t n = y0->seq, nk = attnmap_keys(y0), m = n > nk ? n : nk;
  v->n_layers = t->n_layers;
  v->heads_q = y0->heads_q;
  v->heads_kv = y0->heads_kv;
  v->seq = n;
  v->seq_k = nk;
  v->causal = y0->causal;
  v->block = m <= ATTNMAP_EXACT_MAX
                 ? 1
                 : (m + ATTNMAP_BLOCKS_MAX - 1) / ATTNMAP_BLOCKS_MAX;
  v->n_blocks = attnmap_blocks(n, v->block);
  v->n_blocks_k = attnmap_blocks(nk, v->block);
  const int64_t per = v->heads_q * v->n_blocks * v->n_blocks_k;
  v->maps = malloc((size_t)(v->n_layers * per) * sizeof *v->maps);
  if (!v->maps) {
    attnmap_view_free(v);
    return fail(err, err_size, "attention map: out of memory");
  }
  for (int64_t l = 0; l < v->n_layers; l++) {
    if (attnmap_pooled(&t->layers[l], v->block, threads, v->maps + l * per, err,
                       err_size) != 0) {
      attnmap_view_free(v);
      return -1;
    }
    if (progress)
      progress(l + 1, v->n_layers);
  }
  if (v->block > 1) {
    if (zoom_layer < 0 || zoom_layer >= v->n_layers || zoom_token < 0 ||
        zoom_token >= n) {
      attnmap_view_free(v);
      return fail(err, err_size, "attention map: zoom out of range");
    }
    if (view_zoom(v, t, zoom_layer, zoom_token) != 0) {
      attnmap_view_free(v);
      return fail(err, err_size, "attention map: out of memory (zoom)");
    }
  }
  return 0;
}
