/*
 * layer_internal.h - what the files of libattn_layer share: the layer
 * object, the resolved call (shapes, buffers, the attention params), the
 * dense helpers over CBLAS and the error message helper.
 *
 * Files: layer.c (config, create, parameters, init), call.c (validation,
 * buffer layout, the attention params of a call), positions.c (absolute
 * position tables added to the inputs and their gradients), forward.c,
 * backward.c, dense.c (GEMMs through CBLAS, bias rows and column sums).
 */
#ifndef ATTN_LAYER_INTERNAL_H
#define ATTN_LAYER_INTERNAL_H

#include "attn/layer.h"

#include <stddef.h>
#include <stdint.h>

/* Indices of the named tensors in attn_layer.pidx (-1 = absent). */
enum {
  LP_IN_W, /* in_proj_weight   */
  LP_IN_B, /* in_proj_bias     */
  LP_QW,
  LP_QB,
  LP_KW,
  LP_KB,
  LP_VW,
  LP_VB,
  LP_OW,
  LP_OB,
  LP_POS,    /* pos_table        */
  LP_POS_KV, /* pos_table_kv     */
  LP_REL,    /* rel_bias         */
  LP_COUNT
};

typedef struct layer_tensor {
  const char *name;
  int ndim;
  int64_t shape[2];
  int64_t offset, count;
} layer_tensor;

struct attn_layer {
  attn_layer_config cfg; /* resolved: every 0 default replaced */
  attn_rope rope;
  int64_t nq, nk, nv, no; /* hq*d, hkv*d, hkv*dv, hq*dv */
  layer_tensor t[LP_COUNT];
  int pidx[LP_COUNT]; /* position in the listing, -1 = absent */
  int order[LP_COUNT];
  int n_tensors;
  int64_t n_params;
  float *params, *grads;
  float *alibi; /* [heads_q] for ALIBI */
  void *own_act;
  size_t own_act_size;
};

/* Pointers to a tensor's weights and gradients (NULL when absent). For
 * fused_qkv, the q/k/v blocks of in_proj_*. */
typedef struct layer_weights {
  const float *w[4]; /* q, k, v, out: [n, in] */
  const float *b[4]; /* biases or NULL        */
  float *gw[4], *gb[4];
} layer_weights;
void layer_weights_get(attn_layer *L, layer_weights *w);

/* A call, resolved and checked. */
typedef struct layer_call {
  attn_layer_call c;      /* the caller's, copied over defaults    */
  attn_params opt;        /* the template, over defaults           */
  int64_t B, Sq, Sk;      /* batch, rows of x, rows of y (= Sq self) */
  int64_t rows_q, rows_k; /* B*Sq, B*Sk                           */
  int64_t nseq;           /* sequences (varlen_batch or B)          */
  int absolute;           /* SINUSOIDAL or LEARNED                  */
  char *err;
  size_t err_size;
  /* activation layout (byte offsets from the buffer start) */
  size_t a_q, a_k, a_v, a_o, a_lse, a_total;
  /* workspace layout (byte offsets), forward and backward */
  size_t w_xp, w_yp, w_tab, w_attn_f;                           /* forward */
  size_t w_do, w_dq, w_dk, w_dv, w_dxp, w_dyp, w_rel, w_attn_b; /* bwd */
  size_t attn_fwd_bytes, attn_bwd_bytes;
  size_t ws_fwd, ws_bwd;
} layer_call;

/* Header at the start of an activation buffer: which forward wrote it. */
typedef struct layer_act_header {
  uint64_t magic;
  uint64_t layer_id;
  int64_t B, Sq, Sk;
  uint64_t bytes;
} layer_act_header;
#define LAYER_ACT_MAGIC 0x6174746e6c617972ull /* "attnlayr" */
#define LAYER_ALIGN 64

/* Writes "reason" to buf (if any) and returns st. */
attn_status layer_fail(char *buf, size_t size, attn_status st, const char *fmt,
                       ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Copies and checks c (size bytes of the caller's struct) for layer L;
 * computes the buffer layouts (workspace sizes of the attention calls
 * under ctx). need_ptrs: check the data pointers too (not for sizing). */
attn_status layer_call_resolve(attn_layer *L, attn_context *ctx,
                               const attn_layer_call *c, size_t size,
                               int need_ptrs, int backward, layer_call *lc);

/* The attention params of a call: lc->opt plus q, k, v, o, lse views over
 * the activation buffer act, the layer's ALiBi slopes or T5 table. */
void layer_attn_params(const attn_layer *L, const layer_call *lc, char *act,
                       attn_params *p);
/* The layer's ALiBi slopes or T5 table (and its settings) into p. */
void layer_position_params(const attn_layer *L, attn_params *p);

/* Absolute positions: dst [rows, width] = src + table rows at the rows'
 * positions (x: is_key 0, y: is_key 1). tab is workspace of
 * seq * width floats (SINUSOIDAL). */
attn_status layer_pos_add(const attn_layer *L, const layer_call *lc, int is_key,
                          const float *src, float *dst, float *tab);
/* LEARNED: adds the rows of dsrc [rows, width] into the table gradient. */
void layer_pos_grad(attn_layer *L, const layer_call *lc, int is_key,
                    const float *dsrc);
/* Position of row r (0 .. rows-1) of x (is_key 0) or y (is_key 1). */
int64_t layer_row_pos(const layer_call *lc, int is_key, int64_t r);

/* The activation buffer of a call: the caller's (checked for size and
 * alignment) or the layer's own (grown when grow is set). */
attn_status layer_activations(attn_layer *L, const layer_call *lc, int grow,
                              char **act);
/* The workspace of a call: the caller's, or *owned (the caller frees it). */
attn_status layer_workspace(const layer_call *lc, size_t need, char **ws,
                            void **owned);
/* The inputs of the projections: x' and y' (absolute positions added, into
 * the workspace) and the value input. */
attn_status layer_inputs(const attn_layer *L, const layer_call *lc, char *ws,
                         const float **xin, const float **yin,
                         const float **vin);

/* --- dense (CBLAS) ----------------------------------------------------- */
/* Y [m, n] = X [m, k] W^T (W [n, k]) + b (b NULL: 0). */
void layer_linear(int64_t m, int64_t n, int64_t k, const float *x,
                  const float *w, const float *b, float *y);
/* dX [m, k] (+)= dY [m, n] W [n, k]; accumulate: 1 adds, 0 overwrites. */
void layer_linear_dx(int64_t m, int64_t n, int64_t k, const float *dy,
                     const float *w, float *dx, int accumulate);
/* dW [n, k] += dY^T X; db [n] += column sums of dY (db may be NULL). */
void layer_linear_dw(int64_t m, int64_t n, int64_t k, const float *dy,
                     const float *x, float *dw, float *db);

#endif /* ATTN_LAYER_INTERNAL_H */
