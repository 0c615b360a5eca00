/*
 * vit.h - a Vision Transformer (Dosovitskiy et al. 2020) on scikit-learn's
 * 8x8 handwritten digits, trained from scratch (vit.c), and the data
 * (task_digits.c).
 *
 * The model (pre-LN, as ViT):
 *   patches  the 8x8 image (pixels / 16) cut into P x P patches, row by row:
 *            [b, NP, P*P] (NP = (8 / P)^2, 16 for P = 2)
 *   tokens   x = [cls; patches We^T + be] + pos          [b, 1 + NP, D]
 *   block    x = x + Attn(LN1(x));  x = x + FFN(LN2(x))   (L blocks)
 *            FFN(h) = GELU(h W1^T + b1) W2^T + b2 (exact GELU)
 *   head     logits = LN(x[:, 0]) Wh^T + bh               [b, classes]
 * Attention is libattn's layer (fused in_proj, bidirectional); cls and the
 * learned positions pos [1 + NP, D] are trained. Dropout (p) on every
 * sublayer output before its residual when config.dropout > 0.
 */
#ifndef ATTN_MODEL_VIT_H
#define ATTN_MODEL_VIT_H

#include "train_ops.h"

/* ---- the data: scikit-learn's digits ---------------------------------- */
#define TASK_DIGITS_PIXELS 64 /* 8 x 8 */
typedef struct task_digits {
  int64_t n;  /* images (1,797)                      */
  float *x;   /* [n, 64] pixels 0..16 (row by row)   */
  int32_t *y; /* [n] labels 0..9                     */
} task_digits;

/* Reads scikit-learn's digits.csv.gz (path NULL or "": $ATTN_DIGITS, else
 * the file inside the installed scikit-learn package, found by asking
 * python3, or $ATTN_PYTHON, for the package's directory). Each line: 64
 * pixel values then the label. Returns 0, or -1 with a reason. */
int task_digits_load(const char *path, task_digits *d, char *err,
                     size_t err_size);
void task_digits_free(task_digits *d);
/* The fixed split (independent of the training seed): a permutation of
 * 0..n-1 by splitmix64 from seed 12345; the first n - n/5 are training
 * images (*n_train), the rest held out. idx [n]. */
void task_digits_split(const task_digits *d, int64_t *idx, int64_t *n_train);
/* A batch of b images idx[0..b-1], pixels / 16: images [b, 64], labels
 * [b]. With rng (augment), each image is shifted by -1, 0 or 1 pixel in
 * each direction (zeros shifted in). */
void task_digits_batch(const task_digits *d, const int64_t *idx, int64_t b,
                       train_rng *augment, float *images, int32_t *labels);

/* ---- the model ---------------------------------------------------------- */
typedef struct vit_config {
  int64_t patch;                /* P: 1, 2, 4 or 8                  */
  int64_t d_model, heads, d_ff; /* D, H, F                          */
  int64_t layers;               /* L                                */
  int64_t classes;              /* 10                               */
  int64_t batch;                /* most images of one call          */
  float dropout, label_smoothing;
  int threads; /* attention threads (0 = library's) */
} vit_config;

/* The defaults of `attn train vit`: P 2, D 64, H 4, F 128, L 3, B 64,
 * dropout 0.1, smoothing 0.1. */
void vit_config_default(vit_config *c);

typedef struct vit vit;

/* Weights from seed: patch embedding and the MLPs nn.Linear's U(+-1/sqrt
 * in), cls and pos N(0, 0.02^2), the attention layers
 * attn_layer_init_weights, LN 1 and 0, the head U(+-1/sqrt D). */
int vit_create(const vit_config *c, uint64_t seed, vit **out, char *err,
               size_t err_size);
void vit_free(vit *m);
train_param *vit_params(vit *m, int *n);
const char *const *vit_meta(vit *m, int *n);

/* Loads a checkpoint `attn train vit` wrote, as encdec_load. */
int vit_load(const char *path, int64_t batch, int threads, vit **out, char *err,
             size_t err_size);

/* Forward and backward of b images [b, 64] (pixels / 16) with labels [b]:
 * gradients ADDED, *loss the mean loss. */
int vit_train_step(vit *m, int64_t b, const float *images,
                   const int32_t *labels, double *loss, char *err,
                   size_t err_size);
/* Forward only (no dropout): logits [b, classes] (NULL: not wanted) and
 * pred [b] (the argmax; NULL: not wanted). */
int vit_predict(vit *m, int64_t b, const float *images, float *logits,
                int32_t *pred, char *err, size_t err_size);
/* The attention of every block for one image: *probes gets L probes
 * "block.L" over the 1 + NP tokens (token 0 the class token: row 0 is its
 * attention over the patches). Free as encdec_probe's. */
int vit_probe(vit *m, const float *image, train_attn_probe **probes, int *n,
              char *err, size_t err_size);

#endif
