/*
 * _attn_layer.c - the multi-head attention layer (attn/layer.h) for the
 * Python package (attn.Layer, _layer.py; attn.torch.MultiheadAttention).
 *
 * libattn_layer links OpenBLAS, so it is not loaded with libattn: the
 * first attn.Layer dlopens it (op 0), and a machine without it (or without
 * OpenBLAS) gets an exception from attn.Layer only; the rest of the
 * package works. The layer object lives in a capsule whose destructor
 * frees it; its parameter and gradient buffers are exported, without a
 * copy, through the buffer protocol of a small object that keeps the
 * capsule alive (LayerBuffer), so numpy views of them never dangle.
 *
 * One entry point, attn._attn.layer(op, ...): the argument lists are
 * fixed by _layer.py (see the OP_* comments). Everything the library
 * cannot see (the lengths of x, y, value, out and of the bare pointers) is
 * checked here; the rest is the library's message.
 */
#include "_attn.h"

#include "attn/layer.h"

#include <dlfcn.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* libattn_layer, loaded on first use (under the GIL, once)                 */
/* ------------------------------------------------------------------------ */
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

static struct {
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
} ll;

static PyObject *op_load(PyObject *path_obj) {
  const char *path = PyUnicode_AsUTF8(path_obj);
  if (!path)
    return NULL;
  if (ll.handle)
    Py_RETURN_FALSE;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return PyErr_Format(PyExc_ImportError, "attn: cannot load %s: %s", path,
                        dlerror());
  struct {
    const char *name;
    void **slot;
  } syms[] = {
      {"attn_layer_config_init_sized", (void **)&ll.config_init},
      {"attn_layer_create_sized", (void **)&ll.create},
      {"attn_layer_free", (void **)&ll.free_},
      {"attn_layer_init_weights", (void **)&ll.init_weights},
      {"attn_layer_params", (void **)&ll.params},
      {"attn_layer_grads", (void **)&ll.grads},
      {"attn_layer_zero_grad", (void **)&ll.zero_grad},
      {"attn_layer_num_params", (void **)&ll.num_params},
      {"attn_layer_param_get_sized", (void **)&ll.param_get},
      {"attn_layer_param_find_sized", (void **)&ll.param_find},
      {"attn_layer_call_init_sized", (void **)&ll.call_init},
      {"attn_layer_buffer_sizes_sized", (void **)&ll.buffer_sizes},
      {"attn_layer_forward_sized", (void **)&ll.forward},
      {"attn_layer_backward_sized", (void **)&ll.backward},
      {"attn_layer_decode_workspace_size_sized", (void **)&ll.decode_ws},
      {"attn_layer_decode_sized", (void **)&ll.decode},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; ++i) {
    void *f = dlsym(h, syms[i].name);
    if (!f) {
      dlclose(h);
      return PyErr_Format(PyExc_ImportError,
                          "attn: %s has no symbol %s (a libattn_layer older "
                          "than this package?)",
                          path, syms[i].name);
    }
    memcpy(syms[i].slot, &f, sizeof f);
  }
  ll.handle = h;
  Py_RETURN_TRUE;
}

/* ------------------------------------------------------------------------ */
/* The layer object: a capsule                                              */
/* ------------------------------------------------------------------------ */
typedef struct pylayer {
  attn_layer *L;
  int busy; /* > 0: forwards with caller activations; -1: exclusive */
  /* resolved widths (the header's defaults applied) */
  int64_t d_model, kdim, vdim, d_out, heads_q, heads_kv, head_dim, head_dim_v;
  int cross;
} pylayer;

#define CAPSULE_NAME "attn.layer"

static void capsule_free(PyObject *cap) {
  pylayer *pl = PyCapsule_GetPointer(cap, CAPSULE_NAME);
  if (!pl)
    return;
  if (ll.free_)
    ll.free_(pl->L);
  PyMem_Free(pl);
}

static pylayer *get_layer(PyObject *cap) {
  if (!PyCapsule_IsValid(cap, CAPSULE_NAME)) {
    PyErr_Format(PyExc_TypeError, "attn: not a layer handle");
    return NULL;
  }
  return PyCapsule_GetPointer(cap, CAPSULE_NAME);
}

/* Exclusive (excl) or shared use of a layer while the GIL is released:
 * one thread at a time may write the layer's own buffers. */
static int acquire(pylayer *pl, int excl) {
  if (pl->busy < 0 || (excl && pl->busy > 0)) {
    PyErr_Format(PyExc_RuntimeError,
                 "attn: this Layer is in use by another thread (one thread "
                 "at a time may run it)");
    return -1;
  }
  pl->busy = excl ? -1 : pl->busy + 1;
  return 0;
}

static void release(pylayer *pl, int excl) {
  pl->busy = excl ? 0 : pl->busy - 1;
}

/* config tuple: (d_model, heads_q, heads_kv, head_dim, head_dim_v, d_out,
 * cross, kdim, vdim, fused_qkv, bias_q, bias_k, bias_v, bias_out,
 * position, max_positions, sinusoidal_base, t5_buckets, t5_max_distance,
 * t5_bidirectional) */
enum { CFG_COUNT = 20 };
/* rope tuple: _cache._rope_tuple's 11 entries */
enum { ROPE_COUNT = 11 };

static int read_rope_tuple(PyObject *t, attn_rope *r) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != ROPE_COUNT) {
    PyErr_Format(PyExc_TypeError, "attn: rope: an 11-tuple");
    return -1;
  }
  memset(r, 0, sizeof *r);
  lib.rope_init(r, sizeof *r);
  r->base = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 0));
  r->style = (attn_rope_style)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
  r->dims = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 2));
  r->scaling = (attn_rope_scaling)PyLong_AsLong(PyTuple_GET_ITEM(t, 3));
  double *d[7] = {&r->factor,          &r->original_max_position,
                  &r->low_freq_factor, &r->high_freq_factor,
                  &r->beta_fast,       &r->beta_slow,
                  &r->mscale};
  for (int i = 0; i < 7; ++i)
    *d[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 4 + i));
  return PyErr_Occurred() ? -1 : 0;
}

/* create(config, rope, seed) -> capsule */
static PyObject *op_create(PyObject *const *a, Py_ssize_t n) {
  if (n != 3 || !PyTuple_Check(a[0]) || PyTuple_GET_SIZE(a[0]) != CFG_COUNT)
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer create: bad "
                                         "arguments");
  PyObject *t = a[0];
  attn_layer_config c;
  memset(&c, 0, sizeof c);
  ll.config_init(&c, sizeof c);
  int64_t *w[] = {&c.d_model,  &c.heads_q,    &c.heads_kv,
                  &c.head_dim, &c.head_dim_v, &c.d_out};
  for (int i = 0; i < 6; ++i)
    *w[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
  c.cross = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 6));
  c.kdim = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 7));
  c.vdim = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 8));
  int *flags[] = {&c.fused_qkv, &c.bias_q, &c.bias_k, &c.bias_v, &c.bias_out};
  for (int i = 0; i < 5; ++i)
    *flags[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 9 + i));
  c.position = (attn_layer_position)PyLong_AsLong(PyTuple_GET_ITEM(t, 14));
  c.max_positions = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 15));
  c.sinusoidal_base = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 16));
  c.t5_buckets = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 17));
  c.t5_max_distance = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 18));
  c.t5_bidirectional = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 19));
  unsigned long long seed = PyLong_AsUnsignedLongLongMask(a[2]);
  if (PyErr_Occurred())
    return NULL;
  attn_rope rope;
  if (a[1] != Py_None) {
    if (read_rope_tuple(a[1], &rope) != 0)
      return NULL;
    c.rope = &rope;
  }
  pylayer *pl = PyMem_Calloc(1, sizeof *pl);
  if (!pl)
    return PyErr_NoMemory();
  char msg[512];
  msg[0] = 0;
  attn_status s;
  Py_BEGIN_ALLOW_THREADS;
  s = ll.create(&c, sizeof c, sizeof(attn_rope), &pl->L, msg, sizeof msg);
  if (s == ATTN_OK && seed != 0)
    s = ll.init_weights(pl->L, (uint64_t)seed);
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK) {
    if (pl->L)
      ll.free_(pl->L);
    PyMem_Free(pl);
    raise_status(s, msg);
    return NULL;
  }
  /* the header's defaults, as config_resolve applies them */
  pl->d_model = c.d_model;
  pl->heads_q = c.heads_q;
  pl->heads_kv = c.heads_kv ? c.heads_kv : c.heads_q;
  pl->head_dim = c.head_dim ? c.head_dim : c.d_model / c.heads_q;
  pl->head_dim_v = c.head_dim_v ? c.head_dim_v : pl->head_dim;
  pl->d_out = c.d_out ? c.d_out : c.d_model;
  pl->cross = c.cross;
  pl->kdim = c.kdim ? c.kdim : c.d_model;
  pl->vdim = c.vdim ? c.vdim : pl->kdim;
  PyObject *cap = PyCapsule_New(pl, CAPSULE_NAME, capsule_free);
  if (!cap) {
    ll.free_(pl->L);
    PyMem_Free(pl);
  }
  return cap;
}

static PyObject *param_tuple(const attn_layer_param *p) {
  return Py_BuildValue("(siLLLL)", p->name, p->ndim, (long long)p->shape[0],
                       (long long)p->shape[1], (long long)p->offset,
                       (long long)p->count);
}

/* params(cap) -> (total, [(name, ndim, rows, cols, offset, count), ...]) */
static PyObject *op_params(pylayer *pl) {
  int64_t total = 0;
  ll.params(pl->L, &total);
  int n = ll.num_params(pl->L);
  PyObject *list = PyList_New(n);
  if (!list)
    return NULL;
  for (int i = 0; i < n; ++i) {
    attn_layer_param p;
    attn_status s = ll.param_get(pl->L, i, &p, sizeof p);
    if (s != ATTN_OK) {
      Py_DECREF(list);
      raise_status(s, "attn_layer_param_get failed");
      return NULL;
    }
    PyObject *e = param_tuple(&p);
    if (!e) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, i, e);
  }
  return Py_BuildValue("(LN)", (long long)total, list);
}

/* param_find(cap, name) -> (name, ndim, rows, cols, offset, count) */
static PyObject *op_param_find(pylayer *pl, PyObject *name_obj) {
  const char *name = PyUnicode_AsUTF8(name_obj);
  if (!name)
    return NULL;
  attn_layer_param p;
  attn_status s = ll.param_find(pl->L, name, &p, sizeof p);
  if (s != ATTN_OK)
    return PyErr_Format(PyExc_KeyError,
                        "attn: this layer has no parameter "
                        "%R",
                        name_obj);
  return param_tuple(&p);
}

/* ------------------------------------------------------------------------ */
/* LayerBuffer: the flat parameters or gradients, through the buffer        */
/* protocol, keeping the capsule alive                                      */
/* ------------------------------------------------------------------------ */
typedef struct {
  PyObject_HEAD PyObject *owner; /* the capsule */
  float *data;
  Py_ssize_t n; /* floats */
} layer_buffer;

static int lb_getbuffer(PyObject *self, Py_buffer *view, int flags) {
  layer_buffer *b = (layer_buffer *)self;
  view->obj = Py_NewRef(self);
  view->buf = b->data;
  view->len = b->n * (Py_ssize_t)sizeof(float);
  view->readonly = 0;
  view->itemsize = sizeof(float);
  view->format = (flags & PyBUF_FORMAT) ? "f" : NULL;
  view->ndim = 1;
  view->shape = (flags & PyBUF_ND) ? &b->n : NULL;
  view->strides = (flags & PyBUF_STRIDES) ? &view->itemsize : NULL;
  view->suboffsets = NULL;
  view->internal = NULL;
  return 0;
}

static void lb_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  Py_XDECREF(((layer_buffer *)self)->owner);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyType_Slot lb_slots[] = {
    {Py_tp_dealloc, (void *)lb_dealloc},
    {Py_bf_getbuffer, (void *)lb_getbuffer},
    {Py_tp_doc, (void *)"a layer's flat parameters or gradients (float32)"},
    {0, NULL}};
static PyType_Spec lb_spec = {"attn._attn.LayerBuffer", sizeof(layer_buffer), 0,
                              Py_TPFLAGS_DEFAULT, lb_slots};

/* buffer(cap, which): 0 the parameters, 1 the gradients */
static PyObject *op_buffer(PyObject *cap, pylayer *pl, PyObject *which_obj) {
  long which = PyLong_AsLong(which_obj);
  if (which == -1 && PyErr_Occurred())
    return NULL;
  if (!ll.buffer_type && !(ll.buffer_type = PyType_FromSpec(&lb_spec)))
    return NULL;
  int64_t n = 0;
  float *data = which ? ll.grads(pl->L, &n) : ll.params(pl->L, &n);
  layer_buffer *b = PyObject_New(layer_buffer, (PyTypeObject *)ll.buffer_type);
  if (!b)
    return NULL;
  Py_INCREF(ll.buffer_type); /* instances of heap types own a reference */
  b->owner = Py_NewRef(cap);
  b->data = data;
  b->n = (Py_ssize_t)n;
  return (PyObject *)b;
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */
/* ------------------------------------------------------------------------ */
/* options tuple: (causal, window_left, window_right, scale, softcap, bias,
 * mask, kv_lens, sinks, dropout_p, dropout_seed, prefix_len, q_pos_offset,
 * k_pos_offset, cu_seqlens_q, cu_seqlens_k, threads) */
enum {
  O_CAUSAL,
  O_WL,
  O_WR,
  O_SCALE,
  O_SOFTCAP,
  O_BIAS,
  O_MASK,
  O_KV_LENS,
  O_SINKS,
  O_DROP_P,
  O_DROP_SEED,
  O_PREFIX,
  O_QPOS,
  O_KPOS,
  O_CU_Q,
  O_CU_K,
  O_THREADS,
  O_COUNT
};
enum { OA_BIAS, OA_MASK, OA_KV_LENS, OA_SINKS, OA_CU_Q, OA_CU_K, OA_COUNT };

/* Every array a call holds: x, y, value, out/dout, dx, dy, dvalue, dsinks,
 * and the options' */
enum { AX, AY, AVAL, AOUT, ADX, ADY, ADVAL, ADSINKS, A_N };
typedef struct held {
  arr a[A_N];
  int got[A_N];
  arr o[OA_COUNT];
  int ogot[OA_COUNT];
  Py_buffer act;
  int got_act;
} held;

static void held_release(held *h) {
  for (int i = 0; i < A_N; ++i)
    if (h->got[i])
      arr_release(&h->a[i]);
  for (int i = 0; i < OA_COUNT; ++i)
    if (h->ogot[i])
      arr_release(&h->o[i]);
  if (h->got_act)
    PyBuffer_Release(&h->act);
}

static int contiguous(const arr *a) {
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    if (a->shape[d] != 1 && a->stride[d] != run)
      return 0;
    run *= a->shape[d];
  }
  return 1;
}

/* Reads a [batch, seq, width] (or [seq, width]: batch 1) float32
 * C-contiguous operand into h->a[i]; *b and *s get its batch and length
 * (checked against them when already >= 0). */
static int operand(held *h, int i, PyObject *obj, const char *name, int out,
                   int64_t width, int64_t *b, int64_t *s) {
  arr *a = &h->a[i];
  if (arr_get(obj, name, out, a) != 0) {
    arr_release(a);
    return -1;
  }
  h->got[i] = 1;
  if (a->dtype != DT_F32) {
    PyErr_Format(PyExc_TypeError, "attn: %s must be float32, not %s", name,
                 dt_names[a->dtype]);
    return -1;
  }
  if (a->ndim != 2 && a->ndim != 3) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s must be [batch, seq, %lld] (or [seq, %lld]), got "
                 "%d axes",
                 name, (long long)width, (long long)width, a->ndim);
    return -1;
  }
  const int64_t ab = a->ndim == 3 ? a->shape[0] : 1;
  const int64_t as = a->shape[a->ndim - 2];
  if (a->shape[a->ndim - 1] != width || (*b >= 0 && ab != *b) ||
      (*s >= 0 && as != *s)) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s has shape [%lld, %lld, %lld], expected [%lld, "
                 "%lld, %lld] (-1: any)",
                 name, (long long)ab, (long long)as,
                 (long long)a->shape[a->ndim - 1], (long long)*b, (long long)*s,
                 (long long)width);
    return -1;
  }
  if (!contiguous(a)) {
    PyErr_Format(PyExc_ValueError, "attn: %s must be C-contiguous", name);
    return -1;
  }
  *b = ab;
  *s = as;
  return 0;
}

/* The options tuple into p (arrays held in h); batch: sequences for the
 * lengths of kv_lens (with cu_seqlens: their count) */
static int read_options(PyObject *t, const pylayer *pl, held *h, attn_params *p,
                        int64_t batch, int *varlen) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != O_COUNT) {
    PyErr_Format(PyExc_TypeError, "attn: layer options: a %d-tuple",
                 (int)O_COUNT);
    return -1;
  }
  memset(p, 0, sizeof *p);
  lib.params_init(p, sizeof *p);
  p->causal = (attn_causal)PyLong_AsLong(PyTuple_GET_ITEM(t, O_CAUSAL));
  p->window_left = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_WL));
  p->window_right = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_WR));
  p->scale = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, O_SCALE));
  p->softcap = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, O_SOFTCAP));
  p->dropout_p = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, O_DROP_P));
  p->dropout_seed =
      PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(t, O_DROP_SEED));
  p->prefix_len = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_PREFIX));
  p->q_pos_offset = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_QPOS));
  p->k_pos_offset = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_KPOS));
  long threads = PyLong_AsLong(PyTuple_GET_ITEM(t, O_THREADS));
  if (PyErr_Occurred())
    return -1;
  if (threads < 0 || threads > 1 << 20) {
    PyErr_Format(PyExc_ValueError, "attn: threads must be in 0..2^20");
    return -1;
  }
  p->num_threads = (int)threads;
  static const int idx[OA_COUNT] = {O_BIAS,  O_MASK, O_KV_LENS,
                                    O_SINKS, O_CU_Q, O_CU_K};
  static const char *const names[OA_COUNT] = {
      "bias", "mask", "kv_lens", "sinks", "cu_seqlens_q", "cu_seqlens_k"};
  for (int i = 0; i < OA_COUNT; ++i) {
    PyObject *o = PyTuple_GET_ITEM(t, idx[i]);
    if (o == Py_None)
      continue;
    if (arr_get(o, names[i], 0, &h->o[i]) != 0) {
      arr_release(&h->o[i]);
      return -1;
    }
    h->ogot[i] = 1;
  }
  *varlen = h->ogot[OA_CU_Q] || h->ogot[OA_CU_K];
  if (*varlen) {
    if (!h->ogot[OA_CU_Q] || !h->ogot[OA_CU_K]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: cu_seqlens_q and cu_seqlens_k go together");
      return -1;
    }
    const int64_t nq = h->o[OA_CU_Q].ndim == 1 ? h->o[OA_CU_Q].shape[0] : -1;
    if (nq < 2) {
      PyErr_Format(PyExc_ValueError, "attn: cu_seqlens_q must be 1-D with at "
                                     "least 2 entries [batch + 1]");
      return -1;
    }
    if (vec_check(&h->o[OA_CU_Q], "cu_seqlens_q", DT_I32, nq, "batch + 1") ||
        vec_check(&h->o[OA_CU_K], "cu_seqlens_k", DT_I32, nq,
                  "the length of cu_seqlens_q"))
      return -1;
    if (batch != 1) {
      PyErr_Format(PyExc_ValueError,
                   "attn: with cu_seqlens the batch axis must be 1 (the "
                   "sequences are packed along seq), got %lld",
                   (long long)batch);
      return -1;
    }
    p->cu_seqlens_q = h->o[OA_CU_Q].data;
    p->cu_seqlens_k = h->o[OA_CU_K].data;
    p->varlen_batch = nq - 1;
    batch = nq - 1;
  }
  if (h->ogot[OA_KV_LENS]) {
    if (vec_check(&h->o[OA_KV_LENS], "kv_lens", DT_I32, batch, "[batch]"))
      return -1;
    p->kv_lens = h->o[OA_KV_LENS].data;
  }
  if (h->ogot[OA_SINKS]) {
    if (vec_check(&h->o[OA_SINKS], "sinks", DT_F32, pl->heads_q, "[heads]"))
      return -1;
    p->sinks = h->o[OA_SINKS].data;
  }
  if (h->ogot[OA_BIAS] &&
      bm_tensor(&h->o[OA_BIAS], "bias", DT_F32, &p->bias) != 0)
    return -1;
  if (h->ogot[OA_MASK] &&
      bm_tensor(&h->o[OA_MASK], "mask", DT_BOOL, &p->mask) != 0)
    return -1;
  return 0;
}

/* x, y, value of a call into c (shapes from the arrays). */
static int read_inputs(held *h, const pylayer *pl, PyObject *x, PyObject *y,
                       PyObject *value, attn_layer_call *c) {
  int64_t b = -1, sq = -1, sk = -1;
  if (operand(h, AX, x, "x", 0, pl->d_model, &b, &sq) != 0)
    return -1;
  c->x = h->a[AX].data;
  if (pl->cross) {
    if (y == Py_None) {
      PyErr_Format(PyExc_ValueError,
                   "attn: this layer is cross-attention: pass kv (the key "
                   "input [batch, seq_k, %lld])",
                   (long long)pl->kdim);
      return -1;
    }
    if (operand(h, AY, y, "kv", 0, pl->kdim, &b, &sk) != 0)
      return -1;
    c->y = h->a[AY].data;
    if (value != Py_None) {
      if (operand(h, AVAL, value, "value", 0, pl->vdim, &b, &sk) != 0)
        return -1;
      c->value = h->a[AVAL].data;
    } else if (pl->vdim != pl->kdim) {
      PyErr_Format(PyExc_ValueError,
                   "attn: vdim (%lld) differs from kdim (%lld): pass value",
                   (long long)pl->vdim, (long long)pl->kdim);
      return -1;
    }
  } else {
    if (y != Py_None || value != Py_None) {
      PyErr_Format(PyExc_ValueError,
                   "attn: this layer is self-attention (K and V come from "
                   "x): kv and value must be None (make a cross-attention "
                   "layer with cross=True)");
      return -1;
    }
    sk = sq;
  }
  c->batch = b;
  c->seq_q = sq;
  c->seq_k = sk;
  return 0;
}

static int read_activations(held *h, PyObject *o, attn_layer_call *c) {
  if (o == Py_None)
    return 0;
  if (PyObject_GetBuffer(o, &h->act, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) !=
      0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "attn: activations must be a writable "
                                  "C-contiguous buffer");
    return -1;
  }
  h->got_act = 1;
  c->activations = h->act.buf;
  c->activations_size = (size_t)h->act.len;
  return 0;
}

/* forward(cap, x, y, value, out, options, activations)
 * backward(cap, x, y, value, dout, dx, dy, dvalue, options, activations,
 *          dsinks)
 * sizes(cap, x, y, value, options) -> (activations, workspace) */
static PyObject *op_call(pylayer *pl, int kind, PyObject *const *a,
                         Py_ssize_t n) {
  static const Py_ssize_t want[3] = {7, 11, 5};
  if (n != want[kind])
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
  held h;
  memset(&h, 0, sizeof h);
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_layer_call c;
  memset(&c, 0, sizeof c);
  ll.call_init(&c, sizeof c);
  attn_params p;
  int varlen = 0;
  if (read_inputs(&h, pl, a[1], a[2], a[3], &c) != 0)
    goto done;
  const int opt_at = kind == 0 ? 5 : kind == 1 ? 8 : 4;
  if (read_options(a[opt_at], pl, &h, &p, c.batch, &varlen) != 0)
    goto done;
  c.options = &p;
  c.options_size = sizeof p;
  c.error_message = msg;
  c.error_message_size = sizeof msg;
  attn_status s = ATTN_OK;
  if (kind == 2) {
    size_t act = 0, ws = 0;
    Py_BEGIN_ALLOW_THREADS;
    s = ll.buffer_sizes(pl->L, NULL, &c, sizeof c, &act, &ws);
    Py_END_ALLOW_THREADS;
    if (s != ATTN_OK)
      raise_status(s, msg);
    else
      result = Py_BuildValue("(nn)", (Py_ssize_t)act, (Py_ssize_t)ws);
    goto done;
  }
  int64_t b = c.batch, sq = c.seq_q, sk = c.seq_k;
  if (kind == 0) {
    if (operand(&h, AOUT, a[4], "out", 1, pl->d_out, &b, &sq) != 0)
      goto done;
    c.out = h.a[AOUT].data;
  } else {
    if (operand(&h, AOUT, a[4], "dout", 0, pl->d_out, &b, &sq) != 0)
      goto done;
    c.dout = h.a[AOUT].data;
    if (a[5] != Py_None) {
      if (operand(&h, ADX, a[5], "dx", 1, pl->d_model, &b, &sq) != 0)
        goto done;
      c.dx = h.a[ADX].data;
    }
    if (a[6] != Py_None) {
      if (!pl->cross) {
        PyErr_Format(PyExc_ValueError, "attn: dkv is for cross-attention");
        goto done;
      }
      if (operand(&h, ADY, a[6], "dkv", 1, pl->kdim, &b, &sk) != 0)
        goto done;
      c.dy = h.a[ADY].data;
    }
    if (a[7] != Py_None) {
      if (!c.value) {
        PyErr_Format(PyExc_ValueError, "attn: dvalue needs value");
        goto done;
      }
      if (operand(&h, ADVAL, a[7], "dvalue", 1, pl->vdim, &b, &sk) != 0)
        goto done;
      c.dvalue = h.a[ADVAL].data;
    }
    if (a[10] != Py_None) {
      if (!p.sinks) {
        PyErr_Format(PyExc_ValueError, "attn: dsinks needs sinks");
        goto done;
      }
      arr *ds = &h.a[ADSINKS];
      if (arr_get(a[10], "dsinks", 1, ds) != 0) {
        arr_release(ds);
        goto done;
      }
      h.got[ADSINKS] = 1;
      if (vec_check(ds, "dsinks", DT_F32, pl->heads_q, "[heads]"))
        goto done;
      p.dsinks = ds->data;
    }
  }
  if (read_activations(&h, a[kind == 0 ? 6 : 9], &c) != 0)
    goto done;
  const int excl = kind == 1 || !c.activations;
  if (acquire(pl, excl) != 0)
    goto done;
  lcall_fn fn = kind == 0 ? ll.forward : ll.backward;
  Py_BEGIN_ALLOW_THREADS;
  s = fn(pl->L, NULL, &c, sizeof c);
  Py_END_ALLOW_THREADS;
  release(pl, excl);
  if (s != ATTN_OK)
    raise_status(s, msg);
  else
    result = Py_NewRef(Py_None);
done:
  held_release(&h);
  return result;
}

/* ------------------------------------------------------------------------ */
/* Decoding through an attn.KVCache                                         */
/* ------------------------------------------------------------------------ */
/* cache tuple (_cache.KVCache._desc): (dtype, num_seqs, heads_kv, head_dim,
 * head_dim_v, capacity, k, v, seq_lens, page_size, num_pages,
 * blocks_per_seq, block_table) */
enum { KC_COUNT = 13 };

typedef struct cache_held {
  Py_buffer k, v;
  arr lens, table;
  int got_k, got_v, got_lens, got_table;
} cache_held;

static void cache_release(cache_held *ch) {
  if (ch->got_k)
    PyBuffer_Release(&ch->k);
  if (ch->got_v)
    PyBuffer_Release(&ch->v);
  if (ch->got_lens)
    arr_release(&ch->lens);
  if (ch->got_table)
    arr_release(&ch->table);
}

static int read_cache(PyObject *t, attn_kv_cache *c, cache_held *ch) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != KC_COUNT) {
    PyErr_Format(PyExc_TypeError, "attn: cache: a 13-tuple");
    return -1;
  }
  memset(c, 0, sizeof *c);
  lib.cache_init(c, sizeof *c);
  c->dtype = (attn_dtype)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
  int64_t *f[] = {&c->num_seqs, &c->heads_kv, &c->head_dim, &c->head_dim_v,
                  &c->capacity};
  for (int i = 0; i < 5; ++i)
    *f[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 1 + i));
  c->page_size = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 9));
  c->num_pages = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 10));
  c->blocks_per_seq = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 11));
  if (PyErr_Occurred())
    return -1;
  const int flags = PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS;
  Py_buffer *bufs[2] = {&ch->k, &ch->v};
  int *got[2] = {&ch->got_k, &ch->got_v};
  for (int i = 0; i < 2; ++i) {
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(t, 6 + i), bufs[i], flags) != 0) {
      PyErr_Clear();
      PyErr_Format(PyExc_TypeError, "attn: the cache storage must be "
                                    "writable C-contiguous buffers");
      return -1;
    }
    *got[i] = 1;
  }
  c->k = ch->k.buf;
  c->v = ch->v.buf;
  if (arr_get(PyTuple_GET_ITEM(t, 8), "seq_lens", 1, &ch->lens) != 0) {
    arr_release(&ch->lens);
    return -1;
  }
  ch->got_lens = 1;
  if (vec_check(&ch->lens, "seq_lens", DT_I32, c->num_seqs, "[num_seqs]"))
    return -1;
  c->seq_lens = ch->lens.data;
  PyObject *bt = PyTuple_GET_ITEM(t, 12);
  if (bt != Py_None) {
    if (arr_get(bt, "block_table", 0, &ch->table) != 0) {
      arr_release(&ch->table);
      return -1;
    }
    ch->got_table = 1;
    if (vec_check(&ch->table, "block_table", DT_I32,
                  c->num_seqs * c->blocks_per_seq,
                  "[num_seqs, blocks_per_seq]"))
      return -1;
    c->block_table = ch->table.data;
  }
  return 0;
}

/* decode(cap, cache, x, out, options)
 * decode_workspace(cap, cache, x, options) -> bytes */
static PyObject *op_decode(pylayer *pl, int sizes, PyObject *const *a,
                           Py_ssize_t n) {
  if (n != (sizes ? 4 : 5))
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
  held h;
  cache_held ch;
  memset(&h, 0, sizeof h);
  memset(&ch, 0, sizeof ch);
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_kv_cache kc;
  attn_layer_call c;
  memset(&c, 0, sizeof c);
  ll.call_init(&c, sizeof c);
  attn_params p;
  int varlen = 0;
  if (read_cache(a[1], &kc, &ch) != 0)
    goto done;
  kc.error_message = msg;
  kc.error_message_size = sizeof msg;
  if (read_inputs(&h, pl, a[2], Py_None, Py_None, &c) != 0)
    goto done;
  if (read_options(a[sizes ? 3 : 4], pl, &h, &p, c.batch, &varlen) != 0)
    goto done;
  c.options = &p;
  c.options_size = sizeof p;
  c.error_message = msg;
  c.error_message_size = sizeof msg;
  attn_status s;
  if (sizes) {
    size_t bytes = 0;
    Py_BEGIN_ALLOW_THREADS;
    s = ll.decode_ws(pl->L, NULL, &c, sizeof c, &kc, sizeof kc, &bytes);
    Py_END_ALLOW_THREADS;
    if (s != ATTN_OK)
      raise_status(s, msg);
    else
      result = PyLong_FromSize_t(bytes);
    goto done;
  }
  int64_t b = c.batch, sq = c.seq_q;
  if (operand(&h, AOUT, a[3], "out", 1, pl->d_out, &b, &sq) != 0)
    goto done;
  c.out = h.a[AOUT].data;
  if (acquire(pl, 0) != 0) /* decode reads the layer only */
    goto done;
  Py_BEGIN_ALLOW_THREADS;
  s = ll.decode(pl->L, NULL, &c, sizeof c, &kc, sizeof kc);
  Py_END_ALLOW_THREADS;
  release(pl, 0);
  if (s != ATTN_OK)
    raise_status(s, msg);
  else
    result = Py_NewRef(Py_None);
done:
  held_release(&h);
  cache_release(&ch);
  return result;
}

/* ------------------------------------------------------------------------ */
/* layer(op, ...)                                                           */
/* ------------------------------------------------------------------------ */
enum {
  OP_LOAD,       /* (path) -> bool                                     */
  OP_CREATE,     /* (config, rope, seed) -> handle                      */
  OP_PARAMS,     /* (h) -> (total, [(name, ndim, rows, cols, off, n)])  */
  OP_BUFFER,     /* (h, which) -> LayerBuffer (0 params, 1 grads)       */
  OP_INIT,       /* (h, seed)                                           */
  OP_ZERO_GRAD,  /* (h)                                                 */
  OP_FORWARD,    /* see op_call                                         */
  OP_BACKWARD,   /* see op_call                                         */
  OP_SIZES,      /* see op_call                                         */
  OP_DECODE,     /* see op_decode                                       */
  OP_DECODE_WS,  /* see op_decode                                       */
  OP_PARAM_FIND, /* (h, name) -> (name, ndim, rows, cols, off, n)       */
  OP_DIMS,       /* (h) -> (d_model, kdim, vdim, d_out, heads_q,
                    heads_kv, head_dim, head_dim_v, cross)             */
  OP_LOADED,     /* () -> bool                                          */
  OP_COUNT
};

PyObject *py_layer(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs < 1)
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
  long op = PyLong_AsLong(args[0]);
  if (op == -1 && PyErr_Occurred())
    return NULL;
  if (op == OP_LOADED)
    return PyBool_FromLong(ll.handle != NULL);
  if (op == OP_LOAD) {
    if (nargs != 2)
      return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
    return op_load(args[1]);
  }
  if (op < 0 || op >= OP_COUNT)
    return PyErr_Format(PyExc_ValueError, "attn._attn.layer: bad op %ld", op);
  if (!ll.handle)
    return PyErr_Format(PyExc_RuntimeError,
                        "attn: libattn_layer is not loaded");
  if (op == OP_CREATE)
    return op_create(args + 1, nargs - 1);
  if (nargs < 2)
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
  pylayer *pl = get_layer(args[1]);
  if (!pl)
    return NULL;
  switch (op) {
  case OP_PARAMS:
    return op_params(pl);
  case OP_BUFFER:
    if (nargs != 3)
      break;
    return op_buffer(args[1], pl, args[2]);
  case OP_INIT: {
    if (nargs != 3)
      break;
    unsigned long long seed = PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred() || acquire(pl, 1) != 0)
      return NULL;
    attn_status s = ll.init_weights(pl->L, (uint64_t)seed);
    release(pl, 1);
    if (s != ATTN_OK) {
      raise_status(s, NULL);
      return NULL;
    }
    Py_RETURN_NONE;
  }
  case OP_ZERO_GRAD:
    if (acquire(pl, 1) != 0)
      return NULL;
    ll.zero_grad(pl->L);
    release(pl, 1);
    Py_RETURN_NONE;
  case OP_FORWARD:
  case OP_BACKWARD:
  case OP_SIZES:
    return op_call(pl, (int)(op - OP_FORWARD), args + 1, nargs - 1);
  case OP_DECODE:
  case OP_DECODE_WS:
    return op_decode(pl, op == OP_DECODE_WS, args + 1, nargs - 1);
  case OP_PARAM_FIND:
    if (nargs != 3)
      break;
    return op_param_find(pl, args[2]);
  case OP_DIMS:
    return Py_BuildValue("(LLLLLLLLi)", (long long)pl->d_model,
                         (long long)pl->kdim, (long long)pl->vdim,
                         (long long)pl->d_out, (long long)pl->heads_q,
                         (long long)pl->heads_kv, (long long)pl->head_dim,
                         (long long)pl->head_dim_v, pl->cross);
  default:
    break;
  }
  return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
}
