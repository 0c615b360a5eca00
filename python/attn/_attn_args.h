/*
 * _attn_args.h - the positions of run()'s arguments (attn._attn.run, in
 * _attn.c), shared with attn._attn_torch (_attn_torch.cpp), which calls
 * run() from C++: one list, so the two cannot drift apart. C and C++.
 */
#ifndef ATTN_PY_ARGS_H
#define ATTN_PY_ARGS_H

/* Arguments, in order (None = absent): */
enum {
  A_MODE,   /* 0 forward, 1 backward */
  A_LAYOUT, /* LAYOUT_* */
  A_Q,
  A_K,
  A_V,
  A_O,
  A_LSE,
  A_BIAS,
  A_MASK,
  A_ALIBI,
  A_KV_LENS,
  A_CU_Q,
  A_CU_K,
  A_SINKS,
  A_CAUSAL, /* attn_causal */
  A_WL,
  A_WR,
  A_SCALE,
  A_SOFTCAP,
  A_THREADS,
  A_DROP_P,
  A_DROP_SEED,
  A_DOUT,
  A_DQ,
  A_DK,
  A_DV,
  A_DBIAS,
  A_DSINKS,
  A_SPARSE, /* None, or (global_idx, kind, L, C, block_mask, block_q,
               block_k): attn/sparse.h's options (0.5 params size) */
  A_REPEAT, /* != 0: run the call |repeat| times, return seconds per
               call (wall time, or this thread's CPU time when < 0) */
  A_COUNT
};

#endif /* ATTN_PY_ARGS_H */
