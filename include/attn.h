/*
 * libattn — self-attention, complete and fast, in C.
 *
 * The one public header. Everything the library does goes through
 *
 *     attn_params p;
 *     attn_params_init(&p);           // defaults for every field
 *     p.q = attn_tensor_bshd(...);    // then set what you need
 *     ...
 *     attn_status s = attn_forward(NULL, &p);
 *
 * Contract (per batch b and query head h; kv head g = h / (heads_q/heads_kv)):
 *
 *     s[i][j] = scale * dot(q[b,i,h,:], k[b,j,g,:])
 *     s       = softcap * tanh(s / softcap)              if softcap > 0
 *     s      += -alibi[h] * |i + seq_k - seq_q - j|      if alibi slopes given
 *     s      += rel_bias[bucket(j - i - seq_k + seq_q), h]  if a T5 table
 *     s      += bias[b,h,i,j]                            if bias given
 *     s       = -inf where masked                        (causal, window,
 *                                                        mask tensor, kv_lens)
 *     o[b,i,h,:] = sum_j softmax_j(s[i][:]) * v[b,j,g,:]
 *     lse[b,h,i] = log(sum_j exp(s[i][j]))
 *
 * A query row whose keys are all masked gets o = 0 and lse = -inf (never NaN).
 *
 * Non-finite inputs: -inf in the bias masks. Any other non-finite value a
 * row can see (in its Q row, in a K row or bias element it may attend to)
 * makes its o and lse NaN; a non-finite V element reaches, through P V,
 * the rows that see that key. Rows that cannot see it keep their results,
 * with one exception: inside a tile of ATTN_TILE_Q queries x ATTN_TILE_K
 * keys that has any visible element, a non-finite V (backward: K, V, Q or
 * dO) of a masked element can reach the tile's other rows through 0 * x.
 * Keys beyond kv_lens and tiles with no visible element are never read.
 *
 * Nothing of size seq_q x seq_k is ever allocated: the kernels stream key tiles
 * through an online softmax (Milakov & Gimelshein 2018; Dao et al. 2022).
 *
 * All functions return an attn_status; the library never prints, aborts or
 * exits. Thread safety: concurrent calls on different outputs are safe; a
 * context may be shared by concurrent calls.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(ATTN_BUILD_SHARED)
#define ATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define ATTN_API __attribute__((visibility("default")))
#else
#define ATTN_API
#endif

#define ATTN_VERSION_MAJOR 0
#define ATTN_VERSION_MINOR 5
#define ATTN_VERSION_PATCH 0
#define ATTN_VERSION_NUMBER                                                    \
  (ATTN_VERSION_MAJOR * 10000 + ATTN_VERSION_MINOR * 100 + ATTN_VERSION_PATCH)

/* Run-time version, ATTN_VERSION_NUMBER of the library actually linked. */
ATTN_API int attn_version_number(void);
/* "0.1.0" */
ATTN_API const char *attn_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes: 0 is success, every error is negative. Numbers are fixed.  */
/* ------------------------------------------------------------------------ */
typedef enum attn_status {
  ATTN_OK = 0,
  ATTN_ERR_NULL_POINTER = -1,     /* a required pointer is NULL             */
  ATTN_ERR_INVALID_SHAPE = -2,    /* a size is zero/negative or mismatched  */
  ATTN_ERR_HEAD_RATIO = -3,       /* heads_q is not a multiple of heads_kv  */
  ATTN_ERR_HEAD_DIM = -4,         /* head_dim out of 1..256 or q/k differ   */
  ATTN_ERR_OVERLAP = -5,          /* output memory overlaps an input        */
  ATTN_ERR_OVERFLOW = -6,         /* a size or offset overflows 64 bits     */
  ATTN_ERR_INVALID_SCALE = -7,    /* scale is NaN or infinite               */
  ATTN_ERR_INVALID_SOFTCAP = -8,  /* softcap is negative, NaN or infinite   */
  ATTN_ERR_INVALID_WINDOW = -9,   /* a window bound is below -1             */
  ATTN_ERR_INVALID_SEQLENS = -10, /* cu_seqlens / kv_lens bad               */
  ATTN_ERR_INVALID_DTYPE = -11,   /* unknown dtype or unsupported combo     */
  ATTN_ERR_UNSUPPORTED_ISA = -12, /* forced ISA not available on this CPU   */
  ATTN_ERR_OUT_OF_MEMORY = -13,   /* an allocation failed                   */
  ATTN_ERR_WORKSPACE_TOO_SMALL = -14, /* caller workspace below required    */
  ATTN_ERR_INVALID_ARGUMENT = -15,    /* any other bad option value         */
  ATTN_ERR_INVALID_STRIDE = -16,      /* a stride is negative               */
  ATTN_ERR_THREAD = -17,              /* reserved: never returned (a thread
                                         that cannot start is replaced by
                                         running its share on the caller) */
  ATTN_ERR_ABI = -18 /* a struct size this library does not know: the
                        program was built against a newer attn.h      */
} attn_status;

/* A short, static, English explanation of a status ("head ratio: ..."). */
ATTN_API const char *attn_strerror(attn_status status);

/* ------------------------------------------------------------------------ */
/* Tensors are strided views. Sizes and strides are in elements.            */
/* ------------------------------------------------------------------------ */
typedef enum attn_dtype {
  ATTN_DTYPE_F32 = 0,
  ATTN_DTYPE_BF16 = 1, /* storage only: the kernels accumulate in f32 */
  ATTN_DTYPE_F16 = 2,  /* IEEE half, storage only                     */
  ATTN_DTYPE_BOOL = 3, /* one byte, 0 = false; masks only             */
  /* Quantised K and V (0.4), GGUF's block layouts along head_dim, blocks
   * of 32 values: the kernels read them directly, accumulating in f32.
   *   Q8_0  34 bytes: f16 scale d, int8 q[32];     x_i = d q_i
   *   Q4_0  18 bytes: f16 scale d, uint8 q[16];    x_i = d (n_i - 8), n_i
   *         the low nibble of q[i] for i < 16, the high one of q[i - 16]
   * For these, the element of attn_tensor's strides is one block: head_dim
   * must be a multiple of 32, stride[3] must be 1 (a row's blocks are
   * adjacent) and strides 0..2 count blocks. Only k and v (and a KV
   * cache's storage) may be quantised; the backward treats the dequantised
   * values as the inputs (straight-through) and writes dk, dv in
   * f32|bf16|f16. */
  ATTN_DTYPE_Q8_0 = 4,
  ATTN_DTYPE_Q4_0 = 5
} attn_dtype;

/* Size in bytes of one element of dtype (of one block of 32 values for
 * the quantised dtypes), 0 for an unknown dtype. */
ATTN_API size_t attn_dtype_size(attn_dtype dtype);
/* Values per element: 32 for the quantised dtypes, 1 for the others, 0
 * for an unknown dtype. */
ATTN_API int64_t attn_dtype_block(attn_dtype dtype);

/*
 * A 4-D strided view. For Q, K, V and O the axes are always, logically,
 *     [batch, seq, heads, head_dim]
 * whatever the memory order: a [batch, heads, seq, dim] buffer is the same
 * view with other strides (see attn_tensor_bhsd). For packed variable-length
 * batches (cu_seqlens) batch is 1 and seq is the total token count.
 *
 * For the additive bias and the boolean mask the axes are
 *     [batch, heads_q, seq_q, seq_k]
 * and an axis of size 1 broadcasts (its stride is then ignored). With packed
 * batches (cu_seqlens) batch is the number of sequences and the seq axes are
 * indexed by the position inside each sequence: they must be 1 or at least
 * the longest sequence. kv_lens is then per sequence too.
 *
 * data == NULL means "absent" for the optional tensors (bias, mask).
 */
typedef struct attn_tensor {
  void *data;        /* first element                                */
  attn_dtype dtype;  /* element type                                 */
  int64_t shape[4];  /* sizes, see above                             */
  int64_t stride[4]; /* in elements, >= 0; 0 broadcasts that axis    */
} attn_tensor;

/* Contiguous [batch, seq, heads, dim] view of data. */
ATTN_API attn_tensor attn_tensor_bshd(void *data, attn_dtype dtype,
                                      int64_t batch, int64_t seq, int64_t heads,
                                      int64_t dim);
/* Contiguous [batch, heads, seq, dim] memory, seen in the logical order. */
ATTN_API attn_tensor attn_tensor_bhsd(void *data, attn_dtype dtype,
                                      int64_t batch, int64_t seq, int64_t heads,
                                      int64_t dim);
/* Contiguous 4-D view with the axes in the order given (bias and mask).
 * For the quantised dtypes the three helpers take dim (d3) in values and
 * count the strides in blocks (dim / 32 per row). */
ATTN_API attn_tensor attn_tensor_contiguous(void *data, attn_dtype dtype,
                                            int64_t d0, int64_t d1, int64_t d2,
                                            int64_t d3);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Causal masks, drawn for seq_q = 3, seq_k = 5 (x = may attend):
 *
 *   ATTN_CAUSAL_BOTTOM_RIGHT        ATTN_CAUSAL_TOP_LEFT
 *   (FlashAttention, KV-cache)      (PyTorch is_causal=True)
 *        k0 k1 k2 k3 k4                  k0 k1 k2 k3 k4
 *   q0    x  x  x  .  .             q0    x  .  .  .  .
 *   q1    x  x  x  x  .             q1    x  x  .  .  .
 *   q2    x  x  x  x  x             q2    x  x  x  .  .
 *
 * Bottom-right: query i sees key j when j <= i + seq_k - seq_q.
 * Top-left:     query i sees key j when j <= i.
 * When seq_q > seq_k, bottom-right leaves the first seq_q - seq_k rows with
 * no key at all: they get o = 0, lse = -inf.
 */
typedef enum attn_causal {
  ATTN_CAUSAL_NONE = 0,
  ATTN_CAUSAL_BOTTOM_RIGHT = 1,
  ATTN_CAUSAL_TOP_LEFT = 2
} attn_causal;

/* Instruction set of the kernels. AUTO picks the widest the CPU has. */
typedef enum attn_isa {
  ATTN_ISA_AUTO = 0,
  ATTN_ISA_GENERIC = 1, /* portable C reference kernels */
  ATTN_ISA_AVX2 = 2,    /* AVX2 + FMA + F16C            */
  ATTN_ISA_AVX512 = 3,  /* AVX-512 F/BW/DQ/VL           */
  /* (0.6) AVX-512 plus AVX512-BF16: bf16 Q, K (and V with a bf16 output)
   * take vdpbf16ps dot products (docs/bf16.md); all else as AVX512. */
  ATTN_ISA_AVX512_BF16 = 4,
  /* (0.6) AVX512-BF16 plus AMX (AMX-TILE, AMX-BF16; Intel Sapphire Rapids
   * and later, Linux): the bf16 forward's Q Kᵀ and P V, and the backward's
   * S, as tile dot products; the backward's gradient products in f32 and
   * decode widened (docs/bf16.md); all else as AVX512_BF16. */
  ATTN_ISA_AMX_BF16 = 5
} attn_isa;

/* Name ("generic", "avx2", "avx512", "avx512bf16", "amxbf16", "auto"), or
 * NULL for an unknown value. */
ATTN_API const char *attn_isa_name(attn_isa isa);
/* Parses a name as above; returns ATTN_ERR_INVALID_ARGUMENT when unknown. */
ATTN_API attn_status attn_isa_parse(const char *name, attn_isa *out);
/* 1 when the kernels for isa can run on this CPU (AUTO and GENERIC: 1). */
ATTN_API int attn_isa_supported(attn_isa isa);
/* The ISA that AUTO resolves to: the widest supported, unless the
 * environment variable ATTN_ISA names another supported one. */
ATTN_API attn_isa attn_isa_best(void);

/* Sparse patterns and user functions (0.5; attn/sparse.h explains them). */
typedef enum attn_sparse_kind {
  ATTN_SPARSE_NONE = 0,
  ATTN_SPARSE_STRIDED = 1, /* Child et al. (2019), strided, period L   */
  ATTN_SPARSE_FIXED = 2    /* Child et al. (2019), fixed, blocks L, C  */
} attn_sparse_kind;
/* What a tile classifier (attn_mask_tile_fn) proves about a block. */
#define ATTN_MOD_TILE_EMPTY 0   /* mask_mod is 0 on every element     */
#define ATTN_MOD_TILE_FULL 1    /* mask_mod is nonzero on every one   */
#define ATTN_MOD_TILE_PARTIAL 2 /* mixed, or unknown: test each one  */
/* b: the sequence, h: the query head, i, j: the query row and key inside
 * sequence b (as in attn_dropout_keep). Called from several threads at
 * once: they must be pure functions of their arguments and *user. */
typedef float (*attn_score_mod_fn)(float score, int64_t b, int64_t h, int64_t i,
                                   int64_t j, void *user);
typedef int (*attn_mask_mod_fn)(int64_t b, int64_t h, int64_t i, int64_t j,
                                void *user);
/* Rows i0..i1-1 and keys j0..j1-1 of sequence b, head h. */
typedef int (*attn_mask_tile_fn)(int64_t b, int64_t h, int64_t i0, int64_t i1,
                                 int64_t j0, int64_t j1, void *user);

/*
 * Everything one attention call needs. Initialise with attn_params_init(),
 * then set fields. New fields are only ever appended.
 */
typedef struct attn_params {
  /* --- operands ---------------------------------------------------- */
  attn_tensor q; /* [batch, seq_q, heads_q,  head_dim]    f32|bf16|f16   */
  attn_tensor k; /* [batch, seq_k, heads_kv, head_dim]    f32|bf16|f16   */
  attn_tensor v; /* [batch, seq_k, heads_kv, head_dim_v]  f32|bf16|f16   */
  /* Q, K, V and O may each have any of the three storage dtypes. */
  attn_tensor o; /* [batch, seq_q, heads_q,  head_dim_v]  f32|bf16|f16   */
  float *lse;    /* optional out [batch, heads_q, seq_q], contiguous;
                    with cu_seqlens: [heads_q, total_q]                  */

  /* --- scores ------------------------------------------------------ */
  float scale;   /* 0 (default) means 1/sqrt(head_dim); must be finite    */
  float softcap; /* 0 (default) = off; else s = softcap*tanh(s/softcap)  */
  const float *alibi_slopes; /* optional [heads_q]: s -= slope*|dist|     */
  attn_tensor bias;          /* optional f32 [b|1, hq|1, sq|1, sk|1]      */

  /* --- masks ------------------------------------------------------- */
  attn_causal causal;     /* default NONE                                  */
  int64_t window_left;    /* keys left of the diagonal seen; -1 = all      */
  int64_t window_right;   /* keys right of the diagonal seen; -1 = all     */
  attn_tensor mask;       /* optional bool [b|1, hq|1, sq|1, sk|1],
                             nonzero = may attend                          */
  const int32_t *kv_lens; /* optional [batch]: keys j >= kv_lens[b] are
                             padding, never read. The causal/window
                             diagonal uses this effective length.        */

  /* --- packed variable-length batches ------------------------------ */
  const int32_t *cu_seqlens_q; /* optional [batch+1], both or neither:    */
  const int32_t *cu_seqlens_k; /* sequence b is rows cu[b]..cu[b+1]-1;
                                  q/k/v/o then have batch = 1            */
  int64_t varlen_batch;        /* number of sequences when cu_seqlens set */

  /* --- execution --------------------------------------------------- */
  int num_threads;       /* 0 = the context's (or all online CPUs)            */
  attn_isa isa;          /* AUTO = the context's choice                       */
  void *workspace;       /* optional caller memory: then no allocation at all */
  size_t workspace_size; /* bytes at workspace; see attn_forward_ and
                            attn_backward_workspace_size               */

  /* --- diagnostics (optional) -------------------------------------- */
  char *error_message;       /* if set, a failing call writes a precise  */
  size_t error_message_size; /* NUL-terminated reason here               */

  /* --- backward (attn_backward only; ignored by attn_forward) ------- */
  /* q, k, v, every score and mask option above, and o and lse as the
   * forward wrote them are the backward's inputs: lse is then required
   * and read, not written. */
  attn_tensor dout; /* in  [batch, seq_q, heads_q, head_dim_v]  dL/dO,
                       f32|bf16|f16                                   */
  attn_tensor dq;   /* out [batch, seq_q, heads_q,  head_dim]   dL/dQ  */
  attn_tensor dk;   /* out [batch, seq_k, heads_kv, head_dim]   dL/dK,
                       summed over the query heads of each group      */
  attn_tensor dv;   /* out [batch, seq_k, heads_kv, head_dim_v] dL/dV  */
  /* dq, dk, dv: f32|bf16|f16 each; keys never read (kv_lens padding,
   * rows past the last cu_seqlens) get 0. */
  attn_tensor dbias; /* optional out f32 with exactly bias's shape:
                        dL/dbias summed over the axes bias broadcasts */

  /* ================= appended in 0.2 (see "ABI" below) ============== */

  /* --- positions ---------------------------------------------------- */
  /* Query i of a sequence sits at position
   *     qpos(i) = i + seq_k - seq_q + q_pos_offset (+ q_pos_offsets[b])
   * and key j at
   *     kpos(j) = j + k_pos_offset (+ k_pos_offsets[b]),
   * where seq_k is the sequence's effective key count (kv_lens applied).
   * Causal, window, prefix and ALiBi read only these positions:
   *   bottom-right causal   kpos <= qpos
   *   top-left causal       kpos <= qpos - (seq_k - seq_q)
   *   window (L, R)         qpos' - L <= kpos <= qpos' + R, qpos' being
   *                         the causal alignment's qpos (bottom-right
   *                         without causal)
   *   ALiBi                 s -= slope * |qpos - kpos|
   * With every offset 0 (the default) this is exactly the contract above.
   * A split-KV decode, a paged cache, chunked prefill or ring attention
   * only sets offsets. */
  int64_t q_pos_offset;
  int64_t k_pos_offset;
  const int64_t *q_pos_offsets; /* optional [batch]: per sequence, added  */
  const int64_t *k_pos_offsets; /* optional [batch]: per sequence, added  */

  /* --- more masks --------------------------------------------------- */
  /* Prefix-LM: -1 (default) = off; N >= 0: the query at position p sees
   * key position j when j < N or j <= p (bidirectional over the first N
   * keys, causal after them). Narrows with window, kv_lens and mask like
   * every other mask; together with causal it is ATTN_ERR_INVALID_ARGUMENT.
   *        k0 k1 k2 k3 k4        prefix_len = 2, seq_q = seq_k = 5
   *   q0    x  x  .  .  .
   *   q1    x  x  .  .  .
   *   q2    x  x  x  .  .
   *   q3    x  x  x  x  .
   *   q4    x  x  x  x  x                                              */
  int64_t prefix_len;

  /* Optional: a mask compiled once by attn_mask_compile for these shapes
   * and mask options (see below). The call then skips compiling; its mask
   * options, shapes, kv_lens, cu_seqlens and positions must be the ones
   * the mask was compiled with (checked: ATTN_ERR_INVALID_ARGUMENT). */
  const struct attn_mask *compiled_mask;

  /* ================= appended in 0.3 ================================ */

  /* --- T5 bucketed relative-position bias (Raffel et al. 2020) -------- */
  /* Optional f32 table [rel_buckets, heads_q], row-major, added inside the
   * kernel (never materialised as seq_q x seq_k):
   *     s += rel_bias[bucket(kpos - qpos) * heads_q + h]
   * with the positions above and bucket() the T5 reference's (see
   * attn_t5_bucket: half the buckets for each direction when
   * rel_bidirectional, exact below half of them, logarithmic up to
   * rel_max_distance). Applied after softcap, like ALiBi and bias. */
  const float *rel_bias;
  int64_t rel_buckets;      /* >= 1 when rel_bias is set (default 32)    */
  int64_t rel_max_distance; /* >= 1 (default 128)                        */
  int rel_bidirectional;    /* nonzero: encoder-style, both directions  */
  /* backward only, optional out: dL/d(rel_bias), f32 [rel_buckets,
   * heads_q], summed over batch, rows and keys (overwritten, not added) */
  float *drel_bias;

  /* ================= appended in 0.4 ================================ */

  /* --- attention sinks ------------------------------------------------ */
  /* Optional f32 [heads_q]: a learnable logit per query head that joins
   * every row's softmax denominator without contributing a value (GPT-OSS,
   * StreamingLLM):
   *     lse_i = log(exp(sinks[h]) + sum_j exp(s_ij)),  P_ij = exp(s_ij - lse_i)
   * so a row's probabilities sum to 1 - exp(sinks[h] - lse_i). -inf means
   * no sink for that head; NaN or +inf is ATTN_ERR_INVALID_ARGUMENT. A row
   * that sees no key gets o = 0 and lse = sinks[h]. */
  const float *sinks;
  /* backward only, optional out f32 [heads_q]: dL/dsinks, summed over
   * batch and rows (overwritten, not added):
   *     dsinks[h] = - sum_i exp(sinks[h] - lse_i) rowsum(dO_i * O_i) */
  float *dsinks;

  /* --- dropout on the probabilities ------------------------------------ */
  /* dropout_p in [0, 1): 0 (default) = off. Element (b, h, i, j) of the
   * normalised probabilities is kept, and multiplied by 1 / (1 - p), when
   * attn_dropout_keep(dropout_seed, dropout_p, b, h, i, j) (below): a
   * counter-based generator (Philox4x32-10) of the seed and the element's
   * coordinates, so the backward regenerates the forward's mask without
   * storing it, and the result depends neither on the thread count nor on
   * tile sizes. b is the sequence (its index in cu_seqlens when packed),
   * h the query head, i and j the query and key indices inside the
   * sequence. lse is the undropped softmax's. Not with the decode path
   * (attn_forward uses the tiled kernel when dropout is on) nor the KV
   * cache (inference). */
  float dropout_p;
  uint64_t dropout_seed;

  /* ================= appended in 0.5 ================================ */

  /* --- sparse patterns (attn/sparse.h: the definitions, their tiles) -- */
  /* Longformer: token positions (strictly increasing, >= 0) whose queries
   * see every key and whose keys every query sees; they widen the window
   * (allowed = window or global), every other mask still narrows. */
  const int32_t *global_idx;
  int64_t global_count; /* 0 (default) = none                         */
  /* Child et al.: ATTN_SPARSE_STRIDED (sparse_l = L >= 1) or
   * ATTN_SPARSE_FIXED (L >= 1, 1 <= sparse_c = C <= L); causal by
   * construction; narrows every other mask. */
  int sparse_kind;
  int64_t sparse_l, sparse_c;
  /* Block-sparse layout: optional bool [b|1, hq|1, ceil(seq_q / block_q),
   * ceil(seq_k / block_k)], nonzero = the block may attend; any block
   * sizes >= 1. */
  attn_tensor block_mask;
  int64_t block_q, block_k;
  /* User functions (FlexAttention's score_mod and mask_mod): score_mod
   * replaces every visible score s by score_mod(s, ...) after bias;
   * score_mod_grad (required by attn_backward when score_mod is set) is
   * its derivative d score_mod / d s at s. mask_mod: nonzero = may attend,
   * narrows every other mask; mask_tile optionally proves blocks EMPTY or
   * FULL (else they are probed element by element when tile lists are
   * made). mod_by_head: nonzero when mask_mod or mask_tile depends on h
   * (tile lists per query head). mod_user is passed to all four. */
  attn_score_mod_fn score_mod;
  attn_score_mod_fn score_mod_grad;
  attn_mask_mod_fn mask_mod;
  attn_mask_tile_fn mask_tile;
  int mod_by_head;
  void *mod_user;
} attn_params;

/* ------------------------------------------------------------------------ */
/* ABI: structs grow at the end, programs keep working                     */
/* ------------------------------------------------------------------------ */
/*
 * Every function that takes attn_params or attn_context_options has a
 * "_sized" form that also takes sizeof the struct as the caller's attn.h
 * declared it. The unsuffixed names below are header-inline wrappers that
 * pass sizeof(*p), so a program compiled against this header tells the
 * library which fields it knows: a later libattn.so.0 with appended fields
 * reads only those and uses the defaults for the rest. A size the library
 * does not know (a newer header's, or garbage) is ATTN_ERR_ABI.
 *
 * Programs built against 0.1's attn.h call the exported unsuffixed symbols,
 * which the library keeps and treats as the 0.1 layout.
 */
#define ATTN_PARAMS_SIZE_0_1 ((size_t)offsetof(attn_params, q_pos_offset))
#define ATTN_PARAMS_SIZE_0_2 ((size_t)offsetof(attn_params, rel_bias))
#define ATTN_PARAMS_SIZE_0_3 ((size_t)offsetof(attn_params, sinks))
#define ATTN_PARAMS_SIZE_0_4 ((size_t)offsetof(attn_params, global_idx))

ATTN_API void attn_params_init_sized(attn_params *p, size_t size);

/* ------------------------------------------------------------------------ */
/* Context: optional, opaque, holds defaults (threads, ISA) and a pool.     */
/* ------------------------------------------------------------------------ */
/*
 * A context holds the default thread count and ISA of the calls made under
 * it, and a persistent thread pool: its workers start on the first call
 * that wants more than one thread and sleep between calls (after spinning
 * a few microseconds, so back-to-back calls start fast) until
 * attn_context_free. ctx == NULL means the default context, made on first
 * use (thread-safe) from the environment and never freed.
 *
 * Environment (read when a context is made, for the values its options
 * leave at 0 / AUTO; once per process for the default context):
 *   ATTN_NUM_THREADS  1..1024 (unset or empty: every online CPU)
 *   ATTN_ISA          generic, avx2, avx512, avx512bf16, amxbf16 or auto
 *                     (unset or empty: auto)
 * A bad value is an error, never ignored: ATTN_ERR_INVALID_ARGUMENT (not a
 * number in range, not an ISA name) or ATTN_ERR_UNSUPPORTED_ISA (an ISA
 * this CPU lacks), from attn_context_create, and from every call on the
 * default context with the reason in p->error_message.
 *
 * Concurrency: any number of threads may call with one context (or NULL)
 * at once. The pool serves one call at a time; a call that finds it busy
 * does not wait but runs on a team of threads started for that call alone
 * (slower to start, same results). Results never depend on which. A
 * context must not be freed while a call is using it. After fork, the
 * child may keep using (and free) the parent's contexts: workers are not
 * inherited, so its calls run on temporary teams.
 */
typedef struct attn_context attn_context;

typedef struct attn_context_options {
  int num_threads; /* 0 = all online CPUs (or ATTN_NUM_THREADS)            */
  attn_isa isa;    /* AUTO = widest, or environment ATTN_ISA             */
} attn_context_options;

ATTN_API void attn_context_options_init_sized(attn_context_options *opt,
                                              size_t size);
/* opt may be NULL for defaults. Creates the context's thread pool (its
 * workers start lazily, on the first call that wants more than one
 * thread, and live until attn_context_free). Reads ATTN_NUM_THREADS and
 * ATTN_ISA for what opt leaves to the environment (see above): a bad value
 * gives ATTN_ERR_INVALID_ARGUMENT or ATTN_ERR_UNSUPPORTED_ISA and no
 * context. */
ATTN_API attn_status attn_context_create_sized(attn_context **out,
                                               const attn_context_options *opt,
                                               size_t size);
/* Accepts NULL. */
ATTN_API void attn_context_free(attn_context *ctx);
/* The ISA a call with isa = AUTO will use under this context (ctx may be
 * NULL). */
ATTN_API attn_isa attn_context_isa(const attn_context *ctx);

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */
/* ------------------------------------------------------------------------ */

/* Validates p without computing. Returns the status attn_forward would
 * return for bad input and writes the reason to p->error_message. */
ATTN_API attn_status attn_forward_check_sized(const attn_params *p,
                                              size_t size);

/* Bytes of workspace attn_forward needs for p (with p's thread count and
 * ISA under ctx). Pass a buffer this big (64-byte aligned is best) in
 * p->workspace and the call allocates nothing (once a context's pool has
 * its workers: the first call that starts them, or the first call on the
 * default context, which creates it, allocates those once). */
ATTN_API attn_status attn_forward_workspace_size_sized(attn_context *ctx,
                                                       const attn_params *p,
                                                       size_t size,
                                                       size_t *bytes);

/* O (and LSE) from Q, K, V and the options in p. ctx may be NULL. Results
 * are bitwise identical for every thread count. */
ATTN_API attn_status attn_forward_sized(attn_context *ctx, const attn_params *p,
                                        size_t size);

/*
 * Backward pass: dQ, dK, dV (and dBias) from Q, K, V, the forward's O and
 * LSE, and dO = dL/dO, for every option of the forward (same p, with the
 * backward fields set). FlashAttention-2's recomputation (Dao 2023): the
 * probabilities are recomputed tile by tile from the LSE, nothing of size
 * seq_q x seq_k is allocated (workspace is linear in the sequence lengths).
 *
 *     P    = exp(S - lse)             S: the forward's scores
 *     dV   = P^T dO                   (summed over a kv head's query heads)
 *     dS   = P * (dP - D),  dP = dO V^T,  D = rowsum(dO * O)
 *     dBias= dS                       (summed over bias's broadcast axes)
 *     dS'  = dS * (1 - tanh^2(scale q.k / softcap))     when softcap > 0
 *     dQ   = scale * dS' K,   dK = scale * dS'^T Q
 *
 * Rows the forward saw as fully masked (lse = -inf) contribute nothing:
 * their dQ is 0, never NaN. Results are bitwise identical for every thread
 * count (no reduction order depends on scheduling). Accumulation is f32.
 */

/* Validates p for attn_backward without computing (the forward's checks
 * plus dout, dq, dk, dv, dbias and lse); writes the reason to
 * p->error_message. */
ATTN_API attn_status attn_backward_check_sized(const attn_params *p,
                                               size_t size);

/* Bytes of workspace attn_backward needs for p (with p's thread count and
 * ISA under ctx); pass that much in p->workspace and the call allocates
 * nothing. Linear in the sequence lengths: Q and dO once in f32, up to 8
 * f32 partial copies of dQ (one per chunk of keys), about 100 KiB per
 * thread; nothing of size seq_q x seq_k. */
ATTN_API attn_status attn_backward_workspace_size_sized(attn_context *ctx,
                                                        const attn_params *p,
                                                        size_t size,
                                                        size_t *bytes);

/* dq, dk, dv (and dbias if set) from the inputs in p. ctx may be NULL. */
ATTN_API attn_status attn_backward_sized(attn_context *ctx,
                                         const attn_params *p, size_t size);

/* ------------------------------------------------------------------------ */
/* Compiled masks                                                           */
/* ------------------------------------------------------------------------ */
/*
 * Every mask option (causal in either alignment, window, prefix, kv_lens,
 * the ends of packed sequences, the boolean mask tensor, positions) becomes
 * one structure: for each (sequence, query tile of ATTN_TILE_Q rows) the
 * runs of key tiles (ATTN_TILE_K keys each) that are not empty, each run
 * FULL (no per-element test) or PARTIAL (the element predicate runs on
 * it). The forward and the backward walk only those runs, so skipped tiles
 * cost nothing. Every call compiles its mask internally (in its workspace);
 * attn_mask_compile does it once for many calls (heads, layers, steps).
 *
 * A compiled mask keeps a pointer to the boolean mask tensor (if any): the
 * tensor must stay alive and unchanged while the compiled mask is used.
 */
#define ATTN_TILE_Q 48 /* query rows per tile, both passes, every ISA */
#define ATTN_TILE_K 64 /* keys per tile, both passes, every ISA       */

typedef struct attn_mask attn_mask;

/* Compiles the mask options of p for p's shapes (the operands' data are
 * not read; q, k, v and o must be valid views). */
ATTN_API attn_status attn_mask_compile_sized(const attn_params *p, size_t size,
                                             attn_mask **out);
/* Accepts NULL. */
ATTN_API void attn_mask_free(attn_mask *m);
/* Number of FULL, PARTIAL and EMPTY (query tile, key tile) pairs summed
 * over every sequence and mask head: the work a call will do. */
ATTN_API attn_status attn_mask_tile_counts(const attn_mask *m, int64_t *full,
                                           int64_t *partial, int64_t *empty);

#if !defined(ATTN_BUILDING_LIBRARY)
static inline void attn_params_init(attn_params *p) {
  attn_params_init_sized(p, sizeof *p);
}
static inline void attn_context_options_init(attn_context_options *opt) {
  attn_context_options_init_sized(opt, sizeof *opt);
}
static inline attn_status attn_context_create(attn_context **out,
                                              const attn_context_options *opt) {
  return attn_context_create_sized(out, opt, sizeof *opt);
}
static inline attn_status attn_forward_check(const attn_params *p) {
  return attn_forward_check_sized(p, sizeof *p);
}
static inline attn_status attn_forward_workspace_size(attn_context *ctx,
                                                      const attn_params *p,
                                                      size_t *bytes) {
  return attn_forward_workspace_size_sized(ctx, p, sizeof *p, bytes);
}
static inline attn_status attn_forward(attn_context *ctx,
                                       const attn_params *p) {
  return attn_forward_sized(ctx, p, sizeof *p);
}
static inline attn_status attn_backward_check(const attn_params *p) {
  return attn_backward_check_sized(p, sizeof *p);
}
static inline attn_status attn_backward_workspace_size(attn_context *ctx,
                                                       const attn_params *p,
                                                       size_t *bytes) {
  return attn_backward_workspace_size_sized(ctx, p, sizeof *p, bytes);
}
static inline attn_status attn_backward(attn_context *ctx,
                                        const attn_params *p) {
  return attn_backward_sized(ctx, p, sizeof *p);
}
static inline attn_status attn_mask_compile(const attn_params *p,
                                            attn_mask **out) {
  return attn_mask_compile_sized(p, sizeof *p, out);
}
#else /* the library: the 0.1 entry points, exported under these names */
ATTN_API void attn_params_init(attn_params *p);
ATTN_API void attn_context_options_init(attn_context_options *opt);
ATTN_API attn_status attn_context_create(attn_context **out,
                                         const attn_context_options *opt);
ATTN_API attn_status attn_forward_check(const attn_params *p);
ATTN_API attn_status attn_forward_workspace_size(attn_context *ctx,
                                                 const attn_params *p,
                                                 size_t *bytes);
ATTN_API attn_status attn_forward(attn_context *ctx, const attn_params *p);
ATTN_API attn_status attn_backward_check(const attn_params *p);
ATTN_API attn_status attn_backward_workspace_size(attn_context *ctx,
                                                  const attn_params *p,
                                                  size_t *bytes);
ATTN_API attn_status attn_backward(attn_context *ctx, const attn_params *p);
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* ALiBi slopes of Press et al. (2022) for n heads: 2^(-8 i / n), i = 1..n,
 * with the interpolation of the reference code when n is not a power of 2. */
ATTN_API attn_status attn_alibi_slopes(int64_t heads, float *slopes);

/* Measures this machine's f32 FMA throughput with the widest ISA on
 * num_threads threads (0 = all) for about seconds; writes GFLOP/s. */
ATTN_API attn_status attn_fma_peak_gflops(int num_threads, double seconds,
                                          double *gflops);
/* (0.6) The same for the bf16 dot product of the widest ISA: AMX tiles
 * (tdpbf16ps) on amxbf16, else vdpbf16ps (4 FLOPs a lane);
 * ATTN_ERR_UNSUPPORTED_ISA where the CPU has none (AVX512-BF16). */
ATTN_API attn_status attn_bf16_peak_gflops(int num_threads, double seconds,
                                           double *gflops);

/* Dropout's mask (attn_params.dropout_p): 1 when element (b, h, i, j)
 * is kept for seed and p, else 0. Philox4x32-10 (Salmon et al. 2011) with
 * key (seed low, seed high) and counter (j / 4, i, h, b) (32-bit words;
 * coordinates wrap modulo 2^32), word j % 4 of the result u: kept when
 * u >= floor(p 2^32). p outside [0, 1) gives 0 (nothing kept) for p >= 1
 * or NaN, 1 for p <= 0. */
ATTN_API int attn_dropout_keep(uint64_t seed, float p, int64_t b, int64_t h,
                               int64_t i, int64_t j);

/* Storage conversions used by the kernels (round to nearest even). */
ATTN_API float attn_bf16_to_f32(uint16_t x);
ATTN_API uint16_t attn_f32_to_bf16(float x);
ATTN_API float attn_f16_to_f32(uint16_t x);
ATTN_API uint16_t attn_f32_to_f16(float x);

/* Quantised rows (0.4): n values (a multiple of 32) of f32 x into n / 32
 * adjacent blocks of dtype (ATTN_DTYPE_Q8_0 or Q4_0) at dst, with ggml's
 * rule (quantize_row_q8_0_ref / q4_0_ref: the same bytes), and back. A
 * block holding a NaN or an infinity gets scale NaN (it dequantises to
 * NaN); a scale beyond f16's range becomes inf, as in ggml.
 * ATTN_ERR_INVALID_DTYPE for another dtype, ATTN_ERR_INVALID_SHAPE for n
 * not a multiple of 32 or negative, ATTN_ERR_NULL_POINTER. */
ATTN_API attn_status attn_quantize_row(attn_dtype dtype, const float *x,
                                       int64_t n, void *dst);
ATTN_API attn_status attn_dequantize_row(attn_dtype dtype, const void *src,
                                         int64_t n, float *dst);

#ifdef __cplusplus
}
#endif

/* The parts of the API in their own headers, always included: position
 * schemes (RoPE, sinusoidal, T5 buckets), KV caches and decoding, and the
 * merge of partial results. */
#include "attn/kv_cache.h"
#include "attn/linear.h"
#include "attn/merge.h"
#include "attn/positions.h"
#include "attn/sparse.h"

#endif /* ATTN_H */
