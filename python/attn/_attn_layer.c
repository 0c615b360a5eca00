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
#include "_attn_layer.h"

#include <dlfcn.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* libattn_layer, loaded on first use (under the GIL, once)                 */
/* ------------------------------------------------------------------------ */
attn_py_layer_lib attn_py_ll;

static PyObject *op_load(PyObject *path_obj) {
  const char *path = PyUnicode_AsUTF8(path_obj);
  if (!path)
    return NULL;
  if (attn_py_ll.handle)
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
      {"attn_layer_config_init_sized", (void **)&attn_py_ll.config_init},
      {"attn_layer_create_sized", (void **)&attn_py_ll.create},
      {"attn_layer_free", (void **)&attn_py_ll.free_},
      {"attn_layer_init_weights", (void **)&attn_py_ll.init_weights},
      {"attn_layer_params", (void **)&attn_py_ll.params},
      {"attn_layer_grads", (void **)&attn_py_ll.grads},
      {"attn_layer_zero_grad", (void **)&attn_py_ll.zero_grad},
      {"attn_layer_num_params", (void **)&attn_py_ll.num_params},
      {"attn_layer_param_get_sized", (void **)&attn_py_ll.param_get},
      {"attn_layer_param_find_sized", (void **)&attn_py_ll.param_find},
      {"attn_layer_call_init_sized", (void **)&attn_py_ll.call_init},
      {"attn_layer_buffer_sizes_sized", (void **)&attn_py_ll.buffer_sizes},
      {"attn_layer_forward_sized", (void **)&attn_py_ll.forward},
      {"attn_layer_backward_sized", (void **)&attn_py_ll.backward},
      {"attn_layer_decode_workspace_size_sized",
       (void **)&attn_py_ll.decode_ws},
      {"attn_layer_decode_sized", (void **)&attn_py_ll.decode},
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
  attn_py_ll.handle = h;
  Py_RETURN_TRUE;
}

/* ------------------------------------------------------------------------ */
/* The layer object: a capsule                                              */
/* ------------------------------------------------------------------------ */

#define CAPSULE_NAME "attn.layer"

static void capsule_free(PyObject *cap) {
  pylayer *pl = PyCapsule_GetPointer(cap, CAPSULE_NAME);
  if (!pl)
    return;
  if (attn_py_ll.free_)
    attn_py_ll.free_(pl->L);
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
int layer_acquire(pylayer *pl, int excl) {
  if (pl->busy < 0 || (excl && pl->busy > 0)) {
    PyErr_Format(PyExc_RuntimeError,
                 "attn: this Layer is in use by another thread (one thread "
                 "at a time may run it)");
    return -1;
  }
  pl->busy = excl ? -1 : pl->busy + 1;
  return 0;
}

void layer_release(pylayer *pl, int excl) {
  pl->busy = excl ? 0 : pl->busy - 1;
}

/* config tuple: (d_model, heads_q, heads_kv, head_dim, head_dim_v, d_out,
 * cross, kdim, vdim, fused_qkv, bias_q, bias_k, bias_v, bias_out,
 * position, max_positions, sinusoidal_base, t5_buckets, t5_max_distance,
 * t5_bidirectional) */
enum { CFG_COUNT = 20 };

/* create(config, rope, seed) -> capsule */
static PyObject *op_create(PyObject *const *a, Py_ssize_t n) {
  if (n != 3 || !PyTuple_Check(a[0]) || PyTuple_GET_SIZE(a[0]) != CFG_COUNT)
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer create: bad "
                                         "arguments");
  PyObject *t = a[0];
  attn_layer_config c;
  memset(&c, 0, sizeof c);
  attn_py_ll.config_init(&c, sizeof c);
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
    if (attn_py_read_rope(a[1], &rope) != 0)
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
  s = attn_py_ll.create(&c, sizeof c, sizeof(attn_rope), &pl->L, msg,
                        sizeof msg);
  if (s == ATTN_OK && seed != 0)
    s = attn_py_ll.init_weights(pl->L, (uint64_t)seed);
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK) {
    if (pl->L)
      attn_py_ll.free_(pl->L);
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
    attn_py_ll.free_(pl->L);
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
  attn_py_ll.params(pl->L, &total);
  int n = attn_py_ll.num_params(pl->L);
  PyObject *list = PyList_New(n);
  if (!list)
    return NULL;
  for (int i = 0; i < n; ++i) {
    attn_layer_param p;
    attn_status s = attn_py_ll.param_get(pl->L, i, &p, sizeof p);
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
  attn_status s = attn_py_ll.param_find(pl->L, name, &p, sizeof p);
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
  if (!attn_py_ll.buffer_type &&
      !(attn_py_ll.buffer_type = PyType_FromSpec(&lb_spec)))
    return NULL;
  int64_t n = 0;
  float *data =
      which ? attn_py_ll.grads(pl->L, &n) : attn_py_ll.params(pl->L, &n);
  layer_buffer *b =
      PyObject_New(layer_buffer, (PyTypeObject *)attn_py_ll.buffer_type);
  if (!b)
    return NULL;
  Py_INCREF(
      attn_py_ll.buffer_type); /* instances of heap types own a reference */
  b->owner = Py_NewRef(cap);
  b->data = data;
  b->n = (Py_ssize_t)n;
  return (PyObject *)b;
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
    return PyBool_FromLong(attn_py_ll.handle != NULL);
  if (op == OP_LOAD) {
    if (nargs != 2)
      return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
    return op_load(args[1]);
  }
  if (op < 0 || op >= OP_COUNT)
    return PyErr_Format(PyExc_ValueError, "attn._attn.layer: bad op %ld", op);
  if (!attn_py_ll.handle)
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
    if (PyErr_Occurred() || layer_acquire(pl, 1) != 0)
      return NULL;
    attn_status s = attn_py_ll.init_weights(pl->L, (uint64_t)seed);
    layer_release(pl, 1);
    if (s != ATTN_OK) {
      raise_status(s, NULL);
      return NULL;
    }
    Py_RETURN_NONE;
  }
  case OP_ZERO_GRAD:
    if (layer_acquire(pl, 1) != 0)
      return NULL;
    attn_py_ll.zero_grad(pl->L);
    layer_release(pl, 1);
    Py_RETURN_NONE;
  case OP_FORWARD:
  case OP_BACKWARD:
  case OP_SIZES:
    return layer_op_call(pl, (int)(op - OP_FORWARD), args + 1, nargs - 1);
  case OP_DECODE:
  case OP_DECODE_WS:
    return layer_op_decode(pl, op == OP_DECODE_WS, args + 1, nargs - 1);
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
