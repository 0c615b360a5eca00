/*
 * attn/layer.h — the multi-head attention layer: projections, positions,
 * attention and output projection, forward and backward.
 *
 *     #include <attn/layer.h>       (pkg-config attn-layer: -lattn_layer)
 *
 * This part is its own library, libattn_layer, because its dense
 * projections go through CBLAS (OpenBLAS): programs that use only the
 * kernels of attn.h link libattn alone and never BLAS.
 *
 * What it computes (per batch; PyTorch's nn.MultiheadAttention with
 * batch_first=True, plus GQA/MQA, RoPE, ALiBi, T5 and every option of the
 * core). Weights are row-major [out, in] and y = x W^T + b, like PyTorch's
 * nn.Linear, so PyTorch's weights load as they are:
 *
 *     x' = x + P_q                 P: absolute positions (SINUSOIDAL,
 *     y' = y + P_k (cross)            LEARNED), else 0
 *     Q  = x' Wq^T + bq            [seq_q, heads_q  * head_dim]
 *     K  = s' Wk^T + bk            [seq_k, heads_kv * head_dim]
 *     V  = v' Wv^T + bv            [seq_k, heads_kv * head_dim_v]
 *          (self: s' = v' = x'; cross: s' = y', v' = value, or y' when no
 *           separate value input is given)
 *     Q, K = rope(Q), rope(K)      ROPE, at the core's positions
 *     O  = attention(Q, K, V)      attn_forward with every option of the
 *                                  caller's attn_params template, plus the
 *                                  ALiBi slopes / T5 table of the layer
 *     out = O Wo^T + bo            [seq_q, d_out]
 *
 * Absolute positions: row i of x sits at i + q_pos_offset (+
 * q_pos_offsets[b]) of the template, row j of y at j + k_pos_offset (+
 * k_pos_offsets[b]); with packed batches (cu_seqlens) i and j count from
 * the start of each sequence. A separate value input gets no position
 * (DETR's convention: positions go to queries and keys). RoPE, ALiBi and
 * T5 use the core's positions (attn.h, "positions"), which for
 * self-attention without kv_lens are the same numbers.
 *
 * Parameters are owned by the layer in one flat f32 buffer, their gradients
 * in a second one of the same layout (so a trainer may run AdamW over the
 * whole buffer); attn_layer_param gives each named tensor (PyTorch's names
 * where PyTorch has one):
 *
 *   fused_qkv:  in_proj_weight [hq*d + hkv*d + hkv*dv, d_model]
 *               in_proj_bias   [same rows]            (bias_q)
 *   otherwise:  q_proj_weight  [hq*d, d_model]     q_proj_bias [hq*d]
 *               k_proj_weight  [hkv*d, kdim]        k_proj_bias [hkv*d]
 *               v_proj_weight  [hkv*dv, vdim]       v_proj_bias [hkv*dv]
 *   always:     out_proj.weight [d_out, hq*dv]      out_proj.bias [d_out]
 *   LEARNED:    pos_table      [max_positions, d_model]
 *               pos_table_kv   [max_positions, kdim]        (cross only)
 *   T5:         rel_bias       [t5_buckets, heads_q]
 * in this order (absent ones skipped). With heads_kv = heads_q, head_dim =
 * d_model / heads_q and fused_qkv, in_proj_weight, in_proj_bias,
 * out_proj.weight and out_proj.bias are exactly nn.MultiheadAttention's.
 * (PyTorch keeps a single in_proj_bias even with separate weights: its
 * three blocks are q_proj_bias, k_proj_bias and v_proj_bias.)
 *
 * Gradients: attn_layer_backward ADDS dL/dparam into the gradient buffer
 * (like PyTorch's .grad; clear it with attn_layer_zero_grad) and
 * OVERWRITES the input gradients dx, dy, dvalue.
 *
 * Memory: the forward saves Q, K, V (after RoPE), O and the LSE for the
 * backward in an activation buffer, the caller's (call.activations) or the
 * layer's own; everything else lives in the workspace (call.workspace) or,
 * without one, in memory allocated for the call. With both buffers given
 * (sizes from attn_layer_buffer_sizes) neither pass allocates. Nothing of
 * size seq_q x seq_k exists anywhere.
 *
 * Threads: the attention kernels use the template's num_threads under ctx;
 * the projections use OpenBLAS's own threads (OPENBLAS_NUM_THREADS). One
 * layer object may be used by one thread at a time (its gradient buffer and
 * own activation buffer are written); with caller activations, concurrent
 * forwards on one layer are safe, backwards are not (they add into the
 * same gradients).
 *
 * Attention dropout and sinks come with the options template
 * (dropout_p/dropout_seed: the backward regenerates the forward's mask from
 * the same seed; sinks, and dsinks, which the backward overwrites). Not
 * supported (PyTorch options): add_bias_kv, add_zero_attn,
 * key_padding_mask (use kv_lens or the boolean mask of the template), the
 * averaged attention weights (nothing of size seq x seq is made).
 *
 * Errors: every function returns an attn_status and, where it has a message
 * buffer (the create call's err, call.error_message), a precise reason.
 */
#ifndef ATTN_LAYER_H
#define ATTN_LAYER_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Position scheme of the layer. */
typedef enum attn_layer_position {
  ATTN_LAYER_POS_NONE = 0,
  ATTN_LAYER_POS_SINUSOIDAL = 1, /* Vaswani et al.'s table added to x (and
                                    y), attn_sinusoidal_table; not trained */
  ATTN_LAYER_POS_LEARNED = 2,    /* trainable tables added to x (and y)    */
  ATTN_LAYER_POS_ROPE = 3,       /* Q and K rotated (config.rope)           */
  ATTN_LAYER_POS_ALIBI = 4,      /* attn_alibi_slopes(heads_q); not trained */
  ATTN_LAYER_POS_T5 = 5          /* trainable bucket table, rel_bias        */
} attn_layer_position;

/*
 * What a layer is made of, fixed at attn_layer_create. Initialise with
 * attn_layer_config_init (defaults in brackets), set what you need. New
 * fields are only appended.
 */
typedef struct attn_layer_config {
  int64_t d_model;    /* E: width of x, the query input (required)      */
  int64_t heads_q;    /* query heads (required, >= 1)                    */
  int64_t heads_kv;   /* key/value heads [0 = heads_q]; heads_q must be a
                         multiple (GQA; 1 = MQA)                        */
  int64_t head_dim;   /* [0 = d_model / heads_q, which must divide]      */
  int64_t head_dim_v; /* [0 = head_dim]                                  */
  int64_t d_out;      /* width of out [0 = d_model]                      */
  int cross;          /* [0] self-attention: K, V from x; 1: cross, K from
                         y, V from the value input (or y)               */
  int64_t kdim;       /* cross: width of y [0 = d_model]                 */
  int64_t vdim;       /* cross: width of the value input [0 = kdim]      */
  int fused_qkv;      /* [0] one in_proj_weight (self-attention only;
                         bias_q, bias_k, bias_v must then agree)        */
  int bias_q, bias_k, bias_v, bias_out; /* [1 each] biases of projections */
  attn_layer_position position;         /* [NONE]                         */
  int64_t max_positions;                /* LEARNED: table rows [2048]     */
  double sinusoidal_base;               /* SINUSOIDAL [0 = 10000]         */
  const attn_rope *rope;   /* ROPE: copied at create; NULL = attn_rope_init's
                              defaults (base 10000, HALF, all dims)       */
  int64_t t5_buckets;      /* T5 [32]                                      */
  int64_t t5_max_distance; /* T5 [128]                                     */
  int t5_bidirectional;    /* T5 [1]: encoder style                        */
} attn_layer_config;

ATTN_API void attn_layer_config_init_sized(attn_layer_config *c, size_t size);

typedef struct attn_layer attn_layer;

/* Builds a layer (parameters initialised as attn_layer_init_weights(.., 0)
 * would, gradients zero). On failure *out is NULL and err (if given) says
 * why: ATTN_ERR_INVALID_SHAPE (a width, head count or dimension that is
 * not positive or does not fit), ATTN_ERR_HEAD_RATIO, ATTN_ERR_HEAD_DIM
 * (head_dim or head_dim_v outside 1..256), ATTN_ERR_INVALID_ARGUMENT
 * (fused_qkv with cross or with mixed bias flags, kdim/vdim without cross,
 * an unknown position scheme, bad RoPE or T5 settings),
 * ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_ABI (a config or rope size this
 * library does not know). */
ATTN_API attn_status attn_layer_create_sized(const attn_layer_config *c,
                                             size_t config_size,
                                             size_t rope_size, attn_layer **out,
                                             char *err, size_t err_size);
/* Accepts NULL. */
ATTN_API void attn_layer_free(attn_layer *layer);

/* PyTorch's initialisation of nn.MultiheadAttention, from a seed
 * (deterministic on every platform): the input projections Xavier-uniform,
 * U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) of each weight tensor
 * (in_proj_weight as one tensor, like PyTorch), out_proj.weight
 * nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases 0, learned
 * position tables N(0, 0.02^2) (GPT-2's), the T5 table N(0, 1/d_model)
 * (Hugging Face's T5). Gradients are not touched. */
ATTN_API attn_status attn_layer_init_weights(attn_layer *layer, uint64_t seed);

/* The flat buffers: *count floats each (either pointer argument may be
 * NULL when not wanted). */
ATTN_API float *attn_layer_params(attn_layer *layer, int64_t *count);
ATTN_API float *attn_layer_grads(attn_layer *layer, int64_t *count);
/* Sets every gradient to 0. */
ATTN_API void attn_layer_zero_grad(attn_layer *layer);

/* One named parameter tensor. */
typedef struct attn_layer_param {
  const char *name; /* "q_proj_weight", "out_proj.bias", ... (static) */
  int ndim;         /* 1 or 2                                         */
  int64_t shape[2]; /* [rows, cols] or [n, 1]                         */
  int64_t offset;   /* first element in the flat buffers              */
  int64_t count;    /* elements                                       */
  float *data;      /* attn_layer_params(...) + offset                */
  float *grad;      /* attn_layer_grads(...) + offset                 */
} attn_layer_param;

/* Number of named parameter tensors. */
ATTN_API int attn_layer_num_params(const attn_layer *layer);
/* Tensor index (0 .. num_params - 1), in the order listed above; an index
 * out of range is ATTN_ERR_INVALID_ARGUMENT. */
ATTN_API attn_status attn_layer_param_get_sized(attn_layer *layer, int index,
                                                attn_layer_param *out,
                                                size_t size);
/* The tensor called name; ATTN_ERR_INVALID_ARGUMENT when there is none. */
ATTN_API attn_status attn_layer_param_find_sized(attn_layer *layer,
                                                 const char *name,
                                                 attn_layer_param *out,
                                                 size_t size);

/*
 * One forward or backward call. Initialise with attn_layer_call_init, set
 * the shapes and pointers. The backward takes the same call as its forward
 * (same shapes, inputs, options and activations) plus dout and the input
 * gradients it should write.
 */
typedef struct attn_layer_call {
  int64_t batch; /* sequences (1 with cu_seqlens: then seq_q/seq_k are
                    the total token counts; rows past the last packed
                    sequence attend to nothing: out = the output bias) */
  int64_t seq_q; /* rows of x                                          */
  int64_t seq_k; /* cross: rows of y (self: ignored, = seq_q)          */

  const float *x;     /* in  [batch, seq_q, d_model]                   */
  const float *y;     /* cross: in [batch, seq_k, kdim]; self: NULL     */
  const float *value; /* cross, optional: [batch, seq_k, vdim];
                         NULL = y (then vdim must equal kdim)           */
  float *out;         /* forward out [batch, seq_q, d_out]              */

  /* Optional template of every mask and score option of the core (causal,
   * window, prefix, mask and bias tensors, kv_lens, cu_seqlens with
   * varlen_batch, softcap, scale, position offsets, compiled_mask,
   * num_threads, isa, dbias). Its operands and the fields the layer fills
   * (q, k, v, o, lse, dout, dq, dk, dv, workspace, and alibi_slopes /
   * rel_bias / drel_bias when the layer's scheme sets them) must be left
   * unset. NULL = attn_params_init's defaults. */
  const attn_params *options;
  size_t options_size; /* sizeof(attn_params) (set by attn_layer_call_init) */

  void *activations;       /* optional, saved by forward for backward    */
  size_t activations_size; /* bytes; NULL = the layer's own buffer       */
  void *workspace;         /* optional, 64-byte aligned is best          */
  size_t workspace_size;   /* bytes; NULL = allocate during the call     */

  char *error_message;       /* optional: a failing call writes a   */
  size_t error_message_size; /* NUL-terminated reason here          */

  /* --- backward -------------------------------------------------------- */
  const float *dout; /* in  [batch, seq_q, d_out]  dL/dout             */
  float *dx;         /* out [batch, seq_q, d_model]  (NULL: not wanted) */
  float *dy;         /* cross: out [batch, seq_k, kdim]  (NULL: not wanted) */
  float *dvalue;     /* cross with value: out [batch, seq_k, vdim]      */
} attn_layer_call;

ATTN_API void attn_layer_call_init_sized(attn_layer_call *c, size_t size);

/* Bytes of activations and of workspace (enough for forward and backward)
 * the call needs, with its shapes, options and thread count under ctx.
 * Pointers of c are not read (options and the arrays it points to are). */
ATTN_API attn_status attn_layer_buffer_sizes_sized(
    attn_layer *layer, attn_context *ctx, const attn_layer_call *c, size_t size,
    size_t *activations, size_t *workspace);

/* out from x (and y, value); saves what the backward needs. */
ATTN_API attn_status attn_layer_forward_sized(attn_layer *layer,
                                              attn_context *ctx,
                                              const attn_layer_call *c,
                                              size_t size);

/* dx (dy, dvalue) from dout, and every parameter gradient added into the
 * gradient buffer; c must be the forward's call (its activations were
 * written by that forward: checked by shapes, ATTN_ERR_INVALID_ARGUMENT
 * when the buffer does not hold this layer's forward of these shapes). */
ATTN_API attn_status attn_layer_backward_sized(attn_layer *layer,
                                               attn_context *ctx,
                                               const attn_layer_call *c,
                                               size_t size);

/*
 * Decoding through a KV cache (self-attention layers). c->x holds c->seq_q
 * new tokens of each of the cache's sequences (c->batch = cache->num_seqs;
 * no cu_seqlens, kv_lens or position offsets in the template). Their keys
 * and values are projected, rotated (ROPE) and appended to the cache,
 * which advances cache->seq_lens; then their queries attend to everything
 * the cache holds, through the decode kernel (attn_kv_cache_attend), and
 * c->out gets the layer's output. Token i of sequence s sits at position
 * seq_lens[s] + i (seq_lens before the call) for every scheme (absolute
 * tables, RoPE, ALiBi, T5), so a prompt and then one token at a time give
 * the rows attn_layer_forward gives on the whole sequence with a
 * bottom-right causal mask (set options->causal for a chunk of more than
 * one token). The cache's heads_kv, head_dim and head_dim_v must be the
 * layer's; its storage may be f32, bf16 or f16, contiguous or paged.
 * Forward only (nothing is saved for a backward). Every check runs before
 * the append: an error leaves the cache as it was.
 *
 * Workspace: attn_layer_decode_workspace_size gives the most any decode of
 * this cache needs (every sequence at capacity); with c->workspace that
 * large the call allocates nothing (except OpenBLAS's own buffers).
 */
ATTN_API attn_status attn_layer_decode_workspace_size_sized(
    attn_layer *layer, attn_context *ctx, const attn_layer_call *c, size_t size,
    const attn_kv_cache *cache, size_t cache_size, size_t *bytes);
ATTN_API attn_status attn_layer_decode_sized(
    attn_layer *layer, attn_context *ctx, const attn_layer_call *c, size_t size,
    const attn_kv_cache *cache, size_t cache_size);

/* Header-inline wrappers (see attn.h, "ABI"). */
static inline void attn_layer_config_init(attn_layer_config *c) {
  attn_layer_config_init_sized(c, sizeof *c);
}
static inline attn_status attn_layer_create(const attn_layer_config *c,
                                            attn_layer **out, char *err,
                                            size_t err_size) {
  return attn_layer_create_sized(c, sizeof *c, sizeof(attn_rope), out, err,
                                 err_size);
}
static inline attn_status attn_layer_param_get(attn_layer *layer, int index,
                                               attn_layer_param *out) {
  return attn_layer_param_get_sized(layer, index, out, sizeof *out);
}
static inline attn_status attn_layer_param_find(attn_layer *layer,
                                                const char *name,
                                                attn_layer_param *out) {
  return attn_layer_param_find_sized(layer, name, out, sizeof *out);
}
static inline void attn_layer_call_init(attn_layer_call *c) {
  attn_layer_call_init_sized(c, sizeof *c);
  c->options_size = sizeof(attn_params);
}
static inline attn_status attn_layer_buffer_sizes(attn_layer *layer,
                                                  attn_context *ctx,
                                                  const attn_layer_call *c,
                                                  size_t *activations,
                                                  size_t *workspace) {
  return attn_layer_buffer_sizes_sized(layer, ctx, c, sizeof *c, activations,
                                       workspace);
}
static inline attn_status attn_layer_forward(attn_layer *layer,
                                             attn_context *ctx,
                                             const attn_layer_call *c) {
  return attn_layer_forward_sized(layer, ctx, c, sizeof *c);
}
static inline attn_status attn_layer_backward(attn_layer *layer,
                                              attn_context *ctx,
                                              const attn_layer_call *c) {
  return attn_layer_backward_sized(layer, ctx, c, sizeof *c);
}

static inline attn_status
attn_layer_decode_workspace_size(attn_layer *layer, attn_context *ctx,
                                 const attn_layer_call *c,
                                 const attn_kv_cache *cache, size_t *bytes) {
  return attn_layer_decode_workspace_size_sized(layer, ctx, c, sizeof *c, cache,
                                                sizeof *cache, bytes);
}
static inline attn_status attn_layer_decode(attn_layer *layer,
                                            attn_context *ctx,
                                            const attn_layer_call *c,
                                            const attn_kv_cache *cache) {
  return attn_layer_decode_sized(layer, ctx, c, sizeof *c, cache,
                                 sizeof *cache);
}

#ifdef __cplusplus
}
#endif

#endif /* ATTN_LAYER_H */
