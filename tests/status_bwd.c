/*
 * test_status, the backward's validation: every status attn_backward and
 * attn_backward_check return for bad gradients, workspaces and the forward's
 * own checks, on a hand-picked problem from problem.h (see test_status.c).
 */
#include "problem.h"
#include "status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void expect_bwd(attn_status got, attn_status want, const char *what) {
  CHECK(got == want, "status: %s: got %d (%s), want %d", what, (int)got,
        attn_strerror(got), (int)want);
}

/* The backward's workspace size and the precision of its messages. */
static void bwd_workspace_and_message(const attn_params *p) {
  attn_params q;
  size_t bytes = 0;
  expect_bwd(attn_backward_workspace_size(NULL, p, &bytes), ATTN_OK,
             "workspace size");
  expect_bwd(attn_backward_workspace_size(NULL, p, NULL), ATTN_ERR_NULL_POINTER,
             "workspace size NULL");
  {
    void *ws = tc_alloc(bytes);
    q = *p;
    q.workspace = ws;
    q.workspace_size = bytes - 1;
    expect_bwd(attn_backward(NULL, &q), ATTN_ERR_WORKSPACE_TOO_SMALL,
               "workspace one byte short");
    q.workspace_size = bytes;
    expect_bwd(attn_backward(NULL, &q), ATTN_OK, "caller workspace");
    free(ws);
  }
  {
    char bmsg[128] = "";
    q = *p;
    q.error_message = bmsg;
    q.error_message_size = sizeof bmsg;
    q.dq.shape[1] = 8;
    attn_backward(NULL, &q);
    CHECK(strstr(bmsg, "dq.shape[1]") != NULL,
          "status: error message names dq.shape[1]: \"%s\"", bmsg);
  }
}

void status_bwd_tests(void) {
  tp_problem c;
  tp_problem_init(&c, 2, 4, 2, 9, 11, 8, 8);
  c.index = 200000;
  c.grads = 1;
  c.bias = c.dbias = 1;
  c.bias_mode[1] = TP_AX_ONE;
  c.threads = 2;
  attn_params p, q;
  tp_bufs m;
  tp_build(&c, &p, &m);
  expect_bwd(attn_forward(NULL, &p), ATTN_OK, "forward");
  expect_bwd(attn_backward_check(&p), ATTN_OK, "valid check");
  expect_bwd(attn_backward(NULL, &p), ATTN_OK, "valid");
  expect_bwd(attn_backward(NULL, NULL), ATTN_ERR_NULL_POINTER, "NULL params");
  expect_bwd(attn_backward_check(NULL), ATTN_ERR_NULL_POINTER, "NULL check");
#define MUT(what, want, stmt)                                                  \
  do {                                                                         \
    q = p;                                                                     \
    stmt;                                                                      \
    expect_bwd(attn_backward(NULL, &q), want, what);                           \
    expect_bwd(attn_backward_check(&q), want, what " (check)");                \
  } while (0)
  MUT("lse NULL", ATTN_ERR_NULL_POINTER, q.lse = NULL);
  MUT("dout NULL", ATTN_ERR_NULL_POINTER, q.dout.data = NULL);
  MUT("dq NULL", ATTN_ERR_NULL_POINTER, q.dq.data = NULL);
  MUT("dk NULL", ATTN_ERR_NULL_POINTER, q.dk.data = NULL);
  MUT("dv NULL", ATTN_ERR_NULL_POINTER, q.dv.data = NULL);
  MUT("dq bool", ATTN_ERR_INVALID_DTYPE, q.dq.dtype = ATTN_DTYPE_BOOL);
  MUT("dout bad dtype", ATTN_ERR_INVALID_DTYPE, q.dout.dtype = (attn_dtype)9);
  MUT("dbias bf16", ATTN_ERR_INVALID_DTYPE, q.dbias.dtype = ATTN_DTYPE_BF16);
  MUT("dq seq", ATTN_ERR_INVALID_SHAPE, q.dq.shape[1] = 8);
  MUT("dk heads", ATTN_ERR_INVALID_SHAPE, q.dk.shape[2] = 1);
  MUT("dv dim", ATTN_ERR_INVALID_SHAPE, q.dv.shape[3] = 7);
  MUT("dout batch", ATTN_ERR_INVALID_SHAPE, q.dout.shape[0] = 1);
  MUT("dq zero size", ATTN_ERR_INVALID_SHAPE, q.dq.shape[3] = 0);
  MUT("dq negative stride", ATTN_ERR_INVALID_STRIDE, q.dq.stride[1] = -1);
  MUT("dk self-aliasing", ATTN_ERR_INVALID_STRIDE, q.dk.stride[1] = 0);
  MUT("dbias self-aliasing", ATTN_ERR_INVALID_STRIDE, q.dbias.stride[3] = 0);
  MUT("dq stride overflow", ATTN_ERR_OVERFLOW, q.dq.stride[0] = INT64_MAX / 2);
  MUT("dbias shape", ATTN_ERR_INVALID_SHAPE, q.dbias.shape[1] = 4);
  MUT("dbias without bias", ATTN_ERR_INVALID_ARGUMENT,
      q.bias = attn_tensor_contiguous(NULL, ATTN_DTYPE_F32, 0, 0, 0, 0));
  MUT("dq overlaps q", ATTN_ERR_OVERLAP, q.dq.data = q.q.data);
  MUT("dk overlaps k", ATTN_ERR_OVERLAP, q.dk.data = q.k.data);
  MUT("dv overlaps dout", ATTN_ERR_OVERLAP, q.dv.data = q.dout.data);
  MUT("dq overlaps o", ATTN_ERR_OVERLAP, q.dq.data = q.o.data);
  MUT("dk overlaps dq", ATTN_ERR_OVERLAP, q.dk.data = q.dq.data);
  MUT("dv overlaps dk", ATTN_ERR_OVERLAP, q.dv.data = q.dk.data);
  MUT("dbias overlaps bias", ATTN_ERR_OVERLAP, q.dbias.data = q.bias.data);
  MUT("dq overlaps lse", ATTN_ERR_OVERLAP, q.dq.data = q.lse);
  MUT("forward check: head ratio", ATTN_ERR_HEAD_RATIO, q.k.shape[2] = 3;
      q.v.shape[2] = 3; q.dk.shape[2] = 3; q.dv.shape[2] = 3);
  MUT("forward check: scale", ATTN_ERR_INVALID_SCALE, q.scale = NAN);
  MUT("workspace 0 bytes", ATTN_ERR_WORKSPACE_TOO_SMALL,
      q.workspace = m.mem[TP_Q];
      q.workspace_size = 0);
  if (tp_new_options()) {
    MUT("prefix_len with causal bottom-right", ATTN_ERR_INVALID_ARGUMENT,
        q.prefix_len = 3;
        q.causal = ATTN_CAUSAL_BOTTOM_RIGHT);
    MUT("prefix_len with causal top-left", ATTN_ERR_INVALID_ARGUMENT,
        q.prefix_len = 0;
        q.causal = ATTN_CAUSAL_TOP_LEFT);
    MUT("prefix_len -2", ATTN_ERR_INVALID_ARGUMENT, q.prefix_len = -2);
    MUT("prefix_len 4 ok", ATTN_OK, q.prefix_len = 4);
    MUT("positions ok", ATTN_OK, q.q_pos_offset = -3; q.k_pos_offset = 70);
  }
#undef MUT
  bwd_workspace_and_message(&p);
  tp_bufs_free(&m);
}
