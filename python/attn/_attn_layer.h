/*
 * _attn_layer.h - what the two files of the layer binding share:
 * _attn_layer.c (loading libattn_layer, the layer object, its parameters,
 * the entry point) and _attn_layer_call.c (forward, backward and decode).
 */
#ifndef ATTN_PY_LAYER_H
#define ATTN_PY_LAYER_H

#include "_attn.h"

#include "attn/layer.h"

typedef void (*cfg_init_fn)(attn_layer_config *, size_t);
typedef attn_status (*create_fn)(const attn_layer_config *, size_t, size_t,
                                 attn_layer **, char *, size_t);
typedef void (*free_fn)(attn_layer *);
typedef attn_status (*init_w_fn)(attn_layer *, uint64_t);
typedef float *(*buf_fn)(attn_layer *, int64_t *);
typedef void (*zero_fn)(attn_layer *);
typedef int (*nparams_fn)(const attn_layer *);
typedef attn_status (*pget_fn)(attn_layer *, int, attn_layer_param *, size_t);
typedef attn_status (*pfind_fn)(attn_layer *, const char *, attn_layer_param *,
                                size_t);
typedef void (*call_init_fn)(attn_layer_call *, size_t);
typedef attn_status (*sizes_fn)(attn_layer *, attn_context *,
                                const attn_layer_call *, size_t, size_t *,
                                size_t *);
typedef attn_status (*lcall_fn)(attn_layer *, attn_context *,
                                const attn_layer_call *, size_t);
typedef attn_status (*dec_ws_fn)(attn_layer *, attn_context *,
                                 const attn_layer_call *, size_t,
                                 const attn_kv_cache *, size_t, size_t *);
typedef attn_status (*dec_fn)(attn_layer *, attn_context *,
                              const attn_layer_call *, size_t,
                              const attn_kv_cache *, size_t);

/* libattn_layer's entry points, loaded on first use (under the GIL,
 * once; _attn_layer.c) */
typedef struct attn_py_layer_lib {
  void *handle;
  cfg_init_fn config_init;
  create_fn create;
  free_fn free_;
  init_w_fn init_weights;
  buf_fn params, grads;
  zero_fn zero_grad;
  nparams_fn num_params;
  pget_fn param_get;
  pfind_fn param_find;
  call_init_fn call_init;
  sizes_fn buffer_sizes;
  lcall_fn forward, backward;
  dec_ws_fn decode_ws;
  dec_fn decode;
  PyObject *buffer_type; /* LayerBuffer, made on first use */
} attn_py_layer_lib;
extern attn_py_layer_lib attn_py_ll;

typedef struct pylayer {
  attn_layer *L;
  int busy; /* > 0: forwards with caller activations; -1: exclusive */
  /* resolved widths (the header's defaults applied) */
  int64_t d_model, kdim, vdim, d_out, heads_q, heads_kv, head_dim, head_dim_v;
  int cross;
} pylayer;

/* Exclusive (excl) or shared use of a layer while the GIL is released:
 * one thread at a time may write the layer's own buffers. */
int layer_acquire(pylayer *pl, int excl);
void layer_release(pylayer *pl, int excl);

/* _attn_layer_call.c: kind 0 forward, 1 backward, 2 buffer sizes */
PyObject *layer_op_call(pylayer *pl, int kind, PyObject *const *a,
                        Py_ssize_t n);
PyObject *layer_op_decode(pylayer *pl, int sizes, PyObject *const *a,
                          Py_ssize_t n);

#endif
