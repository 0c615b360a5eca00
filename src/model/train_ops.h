/*
 * train_ops.h - the pieces both trainers (encdec.c, vit.c) are made of, in
 * the spirit of llm.c: every op a forward and a backward over plain f32
 * arrays, shapes in the comments, dense algebra through CBLAS. Attention
 * itself is libattn's layer (attn/layer.h); these are the rest.
 *
 * Conventions. Rows are tokens: x [n, d] is n rows of d floats, row-major.
 * Linear weights are PyTorch's [out, in] (y = x W^T + b). A backward
 * OVERWRITES the input gradient (dx) and ADDS into parameter gradients
 * (dW, db), like PyTorch's .grad. Nothing here allocates, prints or keeps
 * state; the caller owns every buffer.
 */
#ifndef ATTN_MODEL_TRAIN_OPS_H
#define ATTN_MODEL_TRAIN_OPS_H

#include "attn/layer.h"

#include <stddef.h>
#include <stdint.h>

/* ---- random numbers (splitmix64: the same stream on every platform) --- */
typedef struct train_rng {
  uint64_t s;
} train_rng;
uint64_t train_rng_next(train_rng *r);
/* uniform in [0, 1) with 24 random bits */
float train_rng_uniform(train_rng *r);
/* standard normal (Box-Muller, in double) */
float train_rng_normal(train_rng *r);
/* uniform integer in [0, n), n >= 1 */
int64_t train_rng_below(train_rng *r, int64_t n);
/* splitmix64's finaliser of x alone (a hash) */
uint64_t train_hash64(uint64_t x);

/* OpenBLAS's thread count for the dense algebra (n >= 1; 0: unchanged). */
void train_set_blas_threads(int n);

/* ---- linear: y = x W^T + b ------------------------------------------ */
/* x [n, in], w [out, in], b [out] (NULL: none) -> y [n, out] */
void train_linear_forward(const float *x, const float *w, const float *b,
                          float *y, int64_t n, int64_t in, int64_t out);
/* dy [n, out] -> dx [n, in] (overwritten; NULL: not wanted),
 * dw [out, in] += dy^T x, db [out] += sum of dy rows (NULL: none) */
void train_linear_backward(const float *x, const float *w, const float *dy,
                           float *dx, float *dw, float *db, int64_t n,
                           int64_t in, int64_t out);

/* ---- embedding: y[i] = scale * table[ids[i]] ------------------------- */
/* ids [n] in [0, vocab) (checked by the caller), table [vocab, d] ->
 * y [n, d] */
void train_embedding_forward(const int32_t *ids, const float *table,
                             float scale, float *y, int64_t n, int64_t d);
/* dtable [vocab, d] += scale * dy[i] at row ids[i] */
void train_embedding_backward(const int32_t *ids, const float *dy, float scale,
                              float *dtable, int64_t n, int64_t d);

/* ---- layer norm: y = (x - mean) / sqrt(var + eps) * g + b ------------- */
/* x [n, d], g [d], b [d] -> y [n, d]; saves mean [n] and rstd [n]
 * (biased variance, as nn.LayerNorm) */
void train_layernorm_forward(const float *x, const float *g, const float *b,
                             float *y, float *mean, float *rstd, int64_t n,
                             int64_t d, float eps);
/* dy [n, d] -> dx [n, d] (overwritten), dg [d] +=, db [d] += */
void train_layernorm_backward(const float *x, const float *g, const float *mean,
                              const float *rstd, const float *dy, float *dx,
                              float *dg, float *db, int64_t n, int64_t d);

/* ---- activations, elementwise over count values ----------------------- */
/* GELU, the exact form x/2 (1 + erf(x / sqrt 2)) (nn.GELU's default) */
void train_gelu_forward(const float *x, float *y, int64_t count);
void train_gelu_backward(const float *x, const float *dy, float *dx,
                         int64_t count);
void train_relu_forward(const float *x, float *y, int64_t count);
void train_relu_backward(const float *x, const float *dy, float *dx,
                         int64_t count);

/* ---- residual: y += x (count values) ---------------------------------- */
void train_add_inplace(float *y, const float *x, int64_t count);

/* ---- dropout: y = x * keep / (1 - p) ---------------------------------- */
/* keep [count] (written: 1 kept, 0 dropped, drawn from rng); p in [0, 1);
 * p = 0 copies x and keeps everything. x and y may be the same. */
void train_dropout_forward(const float *x, float *y, uint8_t *keep,
                           int64_t count, float p, train_rng *rng);
/* dx = dy * keep / (1 - p); dx may be dy */
void train_dropout_backward(const float *dy, const uint8_t *keep, float *dx,
                            int64_t count, float p);

/* ---- softmax cross-entropy with label smoothing ----------------------- */
/* logits [n, v], targets [n] (a target < 0 is ignored, PyTorch's
 * ignore_index) -> the mean over counted rows of
 *   -(1 - eps) log p[t] - eps / v * sum_j log p[j]
 * (nn.CrossEntropyLoss(label_smoothing=eps)), computed in double. With
 * dlogits [n, v] (NULL: not wanted) writes dL/dlogits = (p - q) / count,
 * q = (1 - eps) onehot(t) + eps / v, and 0 on ignored rows. *counted
 * (NULL: not wanted) gets the number of rows counted; no row counted gives
 * loss 0. */
double train_cross_entropy(const float *logits, const int32_t *targets,
                           float *dlogits, int64_t n, int64_t v, float eps,
                           int64_t *counted);

/* ---- parameters, AdamW, clipping, schedule ----------------------------- */
/* One trainable tensor: where its values and gradients are. */
typedef struct train_param {
  char name[64];    /* its name in checkpoints ("enc.0.ln1.weight") */
  int ndim;         /* 1 or 2                                         */
  int64_t shape[2]; /* [rows, cols] or [n, 1]                         */
  int64_t count;
  float *data, *grad;
  int decay; /* 1: AdamW's weight decay applies (2-D weights) */
} train_param;

/* The trainable tensors of a model: its own (in one flat values buffer and
 * one gradient buffer, allocated by train_params_alloc) and those of its
 * attention layers (pointing into the layers' buffers). */
typedef struct train_params {
  train_param *p; /* [n] */
  int n, cap;
  float ***slots;     /* [n] where to store each own tensor's address */
  int64_t own;        /* own values                                   */
  float *data, *grad; /* [own] each                               */
} train_params;
/* Registers an own tensor [rows, cols] (cols 1: 1-D); *slot gets its
 * values' address at train_params_alloc. Returns 0 or -1 (out of memory,
 * name too long). */
int train_params_own(train_params *ps, const char *name, int64_t rows,
                     int64_t cols, int decay, float **slot);

/* Writes the printf-style reason into err (size bytes, may be 0) and
 * returns -1: the trainers' one error path. */
int train_fail(char *err, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A linear layer's and a layer norm's parameters, owned by a parameter
 * set: w [out, in] and b [out] (linear), w and b [d] (norm). */
typedef struct train_lin {
  float *w, *b;
} train_lin;
typedef struct train_norm {
  float *w, *b;
} train_norm;
/* Registers "<pre><nm>.weight" and "<pre><nm>.bias" in ps (the weight
 * decayed for linear layers, never for norms); 0 or -1 (out of memory). */
int train_reg_lin(train_params *ps, const char *pre, const char *nm,
                  train_lin *l, int64_t out, int64_t in);
int train_reg_norm(train_params *ps, const char *pre, const char *nm,
                   train_norm *n, int64_t d);
/* PyTorch's nn.Linear initialisation (uniform in +-1/sqrt(in), weight and
 * bias) from r; a norm starts as the identity (w 1, b 0). */
void train_init_lin(train_lin *l, int64_t out, int64_t in, train_rng *r);
void train_init_norm(train_norm *n, int64_t d);
/* Registers every tensor of an attention layer as prefix + its name. */
int train_params_layer(train_params *ps, const char *prefix, attn_layer *L);
/* Allocates the own buffers (zeroed), sets the slots and pointers. */
int train_params_alloc(train_params *ps);
void train_params_free(train_params *ps);
/* The gradient of an own tensor, from its values' address. */
float *train_params_grad_of(const train_params *ps, const float *data);

typedef struct train_adamw {
  double lr, beta1, beta2, eps, weight_decay; /* as Python floats */
} train_adamw;

/* One AdamW step (torch.optim.AdamW's single-tensor algorithm, step t >= 1)
 * of count values: p *= 1 - lr wd (when decay); m, v updated; p -= lr /
 * (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
void train_adamw_step(const train_adamw *o, int64_t t, float *p, const float *g,
                      float *m, float *v, int64_t count, int decay);

/* AdamW over a list of parameters: the moments m and v of every value
 * (allocated by train_optim_init, zero), the step count t. */
typedef struct train_optim {
  train_adamw hp;
  int64_t t;     /* steps taken                                  */
  int64_t total; /* values over all parameters                   */
  float *m, *v;  /* [total] each, in the order of the parameters */
} train_optim;
/* Returns 0, or -1 when out of memory. */
int train_optim_init(train_optim *o, const train_adamw *hp,
                     const train_param *params, int n);
/* One step at learning rate lr over every parameter (t advances). */
void train_optim_step(train_optim *o, train_param *params, int n, double lr);
void train_optim_free(train_optim *o);
/* Sets every gradient to 0. */
void train_params_zero_grad(train_param *params, int n);

/* The global L2 norm of every gradient (in double); when max_norm > 0 and
 * the norm exceeds it, scales every gradient by max_norm / (norm + 1e-6)
 * (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. */
double train_clip_grad_norm(train_param *params, int n, double max_norm);

/* Learning rate at step t (1-based): linear warm-up from peak / warmup to
 * peak over warmup steps, then cosine decay to min_ratio * peak at total. */
double train_lr_at(int64_t t, int64_t warmup, int64_t total, double peak,
                   double min_ratio);

/* Reads every tensor of params from a checkpoint (stwrite_read_f32, by
 * name and element count). Returns 0, or -1 with a reason. */
int train_params_load(train_param *params, int n, const char *path, char *err,
                      size_t err_size);
/* The integer metadata value of key in a checkpoint, in [lo, hi]. */
int train_meta_int(const char *path, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, char *err, size_t err_size);

/* ---- attention probes (for pictures: attn show) ----------------------- */
/*
 * What one attention layer computed for one sequence, enough to redraw
 * every probability row by row without a seq x seq matrix:
 *     p[h][i][j] = exp(scale * dot(q[i][h], k[j][h]) - lse[h][i])
 * for the visible keys j (j < seq_k; j <= i when causal).
 */
typedef struct train_attn_probe {
  char name[32];    /* "enc.0.self", "dec.1.cross", "block.2"        */
  int64_t seq_q;    /* query rows                                     */
  int64_t seq_k;    /* keys (the real ones: padding is not included) */
  int64_t heads;    /* query heads = key heads                        */
  int64_t head_dim; /* d                                              */
  float scale;      /* 1 / sqrt(d)                                    */
  int causal;       /* 1: query i sees keys j <= i                    */
  float *q;         /* [seq_q, heads, head_dim] as the kernel saw them */
  float *k;         /* [seq_k, heads, head_dim]                        */
  float *lse;       /* [heads, seq_q]: log sum_j exp(scale q.k)        */
} train_attn_probe;

/* Runs layer's projections (heads query heads = key heads, no positions)
 * and attn_forward on one sequence: x [seq_q, d_model] (and y [seq_k,
 * kdim] for a cross layer, NULL for self) and
 * fills *out (allocating q, k, lse; name copied). Returns 0, or -1 with
 * a reason in err. */
int train_attn_probe_run(attn_layer *layer, int64_t heads, const char *name,
                         const float *x, int64_t seq_q, const float *y,
                         int64_t seq_k, int causal, train_attn_probe *out,
                         char *err, size_t err_size);
void train_attn_probe_free(train_attn_probe *p);

#endif
