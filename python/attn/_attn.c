/*
 * attn/_attn.c - the CPython extension under `import attn`.
 *
 * It reads arrays without copying (the buffer protocol for numpy, the
 * tensor attributes data_ptr / stride / shape / dtype for PyTorch, and
 * __dlpack__ for anything else), fills one attn_params and calls
 * attn_forward_sized / attn_backward_sized (or attn_merge_sized) with the
 * GIL released. The library is not linked: load(path) dlopens libattn.so.0
 * once and looks up the _sized entry points, so the same extension runs
 * the library of a wheel, of a build directory (ATTN_LIBRARY) or of the
 * system. The argument order of run() is fixed by python/attn/_api.py.
 *
 * Everything the C API takes as a bare pointer (lse, alibi slopes,
 * kv_lens, cu_seqlens, sinks, dsinks) is checked here for dtype,
 * contiguity and length, because the library cannot see how long the
 * caller's buffer is. The rest (shapes against each other, strides,
 * overlap, values) is the library's job and comes back as its message.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "attn.h"

/* ------------------------------------------------------------------------ */
/* The library, loaded at run time                                          */
/* ------------------------------------------------------------------------ */
/* The struct sizes passed to the _sized entry points: the 0.4 layouts
 * (the last field this binding sets is dropout_seed), so any libattn from
 * 0.4 on accepts them, whatever fields a newer attn.h appends. */
#define PARAMS_SIZE (offsetof(attn_params, dropout_seed) + sizeof(uint64_t))
#define MERGE_SIZE                                                             \
  (offsetof(attn_merge_params, error_message_size) + sizeof(size_t))

typedef void (*params_init_fn)(attn_params *, size_t);
typedef attn_status (*call_fn)(attn_context *, const attn_params *, size_t);
typedef const char *(*strerror_fn)(attn_status);
typedef const char *(*version_fn)(void);
typedef void (*merge_init_fn)(attn_merge_params *, size_t);
typedef attn_status (*merge_fn)(attn_context *, const attn_merge_params *,
                                size_t);

/* Module state: filled once by load(); read-only afterwards. */
static struct {
  void *handle;
  params_init_fn params_init;
  call_fn forward;
  call_fn backward;
  strerror_fn strerror_;
  version_fn version;
  merge_init_fn merge_init;
  merge_fn merge;
  merge_fn merge_backward;
  PyObject *error_factory; /* callable(status, message) -> exception */
  /* PyTorch objects, looked up the first time a tensor is seen */
  PyObject *torch_tensor_type;
  PyObject *torch_f32, *torch_f16, *torch_bf16, *torch_bool, *torch_i32;
  PyObject *torch_strided;
  /* interned attribute names: their lookups hit the type's method cache */
  PyObject *s_is_cpu, *s_layout, *s_dtype, *s_shape, *s_stride, *s_data_ptr,
      *s_device, *s_dlpack;
} lib;

static PyObject *py_load(PyObject *self, PyObject *arg) {
  (void)self;
  const char *path = PyUnicode_AsUTF8(arg);
  if (!path)
    return NULL;
  if (lib.handle) /* first load wins: one library per process */
    Py_RETURN_FALSE;
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return PyErr_Format(PyExc_ImportError, "attn: cannot load %s: %s", path,
                        dlerror());
  struct {
    const char *name;
    void **slot;
  } syms[] = {
      {"attn_params_init_sized", (void **)&lib.params_init},
      {"attn_forward_sized", (void **)&lib.forward},
      {"attn_backward_sized", (void **)&lib.backward},
      {"attn_strerror", (void **)&lib.strerror_},
      {"attn_version_string", (void **)&lib.version},
      {"attn_merge_params_init_sized", (void **)&lib.merge_init},
      {"attn_merge_sized", (void **)&lib.merge},
      {"attn_merge_backward_sized", (void **)&lib.merge_backward},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; ++i) {
    void *f = dlsym(h, syms[i].name);
    if (!f) {
      dlclose(h);
      return PyErr_Format(PyExc_ImportError,
                          "attn: %s has no symbol %s (a libattn older than "
                          "0.4?)",
                          path, syms[i].name);
    }
    memcpy(syms[i].slot, &f, sizeof f);
  }
  lib.handle = h;
  Py_RETURN_TRUE;
}

static PyObject *py_set_error_factory(PyObject *self, PyObject *arg) {
  (void)self;
  Py_XSETREF(lib.error_factory, Py_NewRef(arg));
  Py_RETURN_NONE;
}

static PyObject *py_version(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  return PyUnicode_FromString(lib.version());
}

static PyObject *py_params_size(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  return PyLong_FromSize_t(PARAMS_SIZE);
}

/* Raises the exception the Python side builds for a library status. */
static void raise_status(attn_status s, const char *msg) {
  const char *text = msg && msg[0] ? msg : lib.strerror_(s);
  if (!lib.error_factory) {
    PyErr_Format(PyExc_RuntimeError, "attn: %s", text);
    return;
  }
  PyObject *exc = PyObject_CallFunction(lib.error_factory, "is", (int)s, text);
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
}

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */
enum { DT_F32, DT_BF16, DT_F16, DT_BOOL, DT_I32, DT_OTHER };
static const char *const dt_names[] = {"float32", "bfloat16", "float16",
                                       "bool",    "int32",    "unsupported"};
#define MAXDIM 8

typedef struct arr {
  void *data;
  int dtype; /* DT_* */
  int ndim;
  int64_t shape[MAXDIM];
  int64_t stride[MAXDIM]; /* elements */
  Py_buffer view;         /* held when has_view */
  int has_view;
  PyObject *capsule; /* a DLPack capsule, held until release */
} arr;

static void arr_release(arr *a) {
  if (a->has_view) {
    PyBuffer_Release(&a->view);
    a->has_view = 0;
  }
  Py_CLEAR(a->capsule);
}

/* DLPack (v0.x unversioned capsules), the part a consumer reads. */
typedef struct {
  int32_t device_type;
  int32_t device_id;
} dl_device;
typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} dl_dtype;
typedef struct {
  void *data;
  dl_device device;
  int32_t ndim;
  dl_dtype dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} dl_tensor;
typedef struct dl_managed {
  dl_tensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct dl_managed *);
} dl_managed;

static int from_buffer(PyObject *obj, const char *name, int writable, arr *a) {
  int flags = PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj, &a->view, flags) != 0) {
    if (writable) {
      PyErr_Clear();
      if (PyObject_GetBuffer(obj, &a->view, PyBUF_RECORDS_RO) == 0) {
        PyBuffer_Release(&a->view);
        PyErr_Format(PyExc_ValueError, "attn: %s is read-only", name);
        return -1;
      }
    }
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "attn: %s: cannot read this array's buffer (%s)", name,
                 Py_TYPE(obj)->tp_name);
    return -1;
  }
  a->has_view = 1;
  const char *f = a->view.format ? a->view.format : "B";
  int swapped = 0;
  if (*f == '<' || *f == '=' || *f == '@')
    ++f;
  else if (*f == '>' || *f == '!') {
    swapped = 1;
    ++f;
  }
  Py_ssize_t isz = a->view.itemsize;
  a->dtype = DT_OTHER;
  if (f[0] && !f[1]) {
    if (*f == 'f' && isz == 4)
      a->dtype = DT_F32;
    else if (*f == 'e' && isz == 2)
      a->dtype = DT_F16;
    else if (*f == '?' && isz == 1)
      a->dtype = DT_BOOL;
    else if ((*f == 'i' || *f == 'l') && isz == 4)
      a->dtype = DT_I32;
  }
  if (swapped && isz > 1)
    a->dtype = DT_OTHER;
  if (a->dtype == DT_OTHER) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s has element format '%s' (%zd bytes): expected "
                 "float32, float16, bfloat16 (torch), bool or int32 in "
                 "native byte order",
                 name, a->view.format ? a->view.format : "B", isz);
    return -1;
  }
  if (a->view.ndim > MAXDIM) {
    PyErr_Format(PyExc_ValueError, "attn: %s has %d dimensions (at most %d)",
                 name, a->view.ndim, MAXDIM);
    return -1;
  }
  a->ndim = a->view.ndim;
  a->data = a->view.buf;
  for (int d = 0; d < a->ndim; ++d) {
    Py_ssize_t st = a->view.strides ? a->view.strides[d] : 0;
    if (st % isz != 0) {
      PyErr_Format(PyExc_ValueError,
                   "attn: %s: stride %zd bytes of axis %d is not a multiple "
                   "of the element size %zd",
                   name, st, d, isz);
      return -1;
    }
    a->shape[d] = a->view.shape[d];
    a->stride[d] = st / isz;
  }
  return 0;
}

static int torch_lookup(void) {
  if (lib.torch_tensor_type)
    return 0;
  PyObject *torch = PyImport_ImportModule("torch");
  if (!torch)
    return -1;
  const char *names[] = {"Tensor", "float32", "float16", "bfloat16",
                         "bool",   "int32",   "strided"};
  PyObject **slots[] = {&lib.torch_tensor_type, &lib.torch_f32,  &lib.torch_f16,
                        &lib.torch_bf16,        &lib.torch_bool, &lib.torch_i32,
                        &lib.torch_strided};
  PyObject *got[7] = {0};
  for (int i = 0; i < 7; ++i) {
    got[i] = PyObject_GetAttrString(torch, names[i]);
    if (!got[i]) {
      for (int j = 0; j < i; ++j)
        Py_DECREF(got[j]);
      Py_DECREF(torch);
      return -1;
    }
  }
  Py_DECREF(torch);
  for (int i = 0; i < 7; ++i)
    *slots[i] = got[i];
  return 0;
}

/* 1 when obj is a torch.Tensor (torch already imported), 0 if not, -1 on
 * error. */
static int is_torch(PyObject *obj) {
  if (!lib.torch_tensor_type) {
    PyObject *mods = PyImport_GetModuleDict();
    if (!PyDict_GetItemString(mods, "torch"))
      return 0;
    if (torch_lookup() != 0)
      return -1;
  }
  return PyObject_IsInstance(obj, lib.torch_tensor_type);
}

static int int_tuple(PyObject *t, const char *name, const char *what,
                     int64_t *out, int *n) {
  PyObject *seq = PySequence_Fast(t, "not a sequence");
  if (!seq) {
    PyErr_Format(PyExc_TypeError, "attn: %s: bad %s", name, what);
    return -1;
  }
  Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
  if (len > MAXDIM) {
    Py_DECREF(seq);
    PyErr_Format(PyExc_ValueError, "attn: %s has %zd dimensions (at most %d)",
                 name, len, MAXDIM);
    return -1;
  }
  for (Py_ssize_t i = 0; i < len; ++i) {
    long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
    if (v == -1 && PyErr_Occurred()) {
      Py_DECREF(seq);
      return -1;
    }
    out[i] = v;
  }
  *n = (int)len;
  Py_DECREF(seq);
  return 0;
}

static int from_torch(PyObject *obj, const char *name, arr *a) {
  PyObject *v = PyObject_GetAttr(obj, lib.s_is_cpu);
  if (!v)
    return -1;
  int cpu = PyObject_IsTrue(v);
  Py_DECREF(v);
  if (cpu != 1) {
    PyObject *dev = PyObject_GetAttr(obj, lib.s_device);
    PyErr_Format(PyExc_ValueError,
                 "attn: %s is on device %S; libattn runs on the CPU (move it "
                 "with .cpu())",
                 name, dev ? dev : Py_None);
    Py_XDECREF(dev);
    return -1;
  }
  v = PyObject_GetAttr(obj, lib.s_layout);
  if (!v)
    return -1;
  int strided = v == lib.torch_strided;
  if (!strided) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s has layout %S: only strided (dense) tensors", name,
                 v);
    Py_DECREF(v);
    return -1;
  }
  Py_DECREF(v);
  v = PyObject_GetAttr(obj, lib.s_dtype);
  if (!v)
    return -1;
  a->dtype = v == lib.torch_f32    ? DT_F32
             : v == lib.torch_f16  ? DT_F16
             : v == lib.torch_bf16 ? DT_BF16
             : v == lib.torch_bool ? DT_BOOL
             : v == lib.torch_i32  ? DT_I32
                                   : DT_OTHER;
  if (a->dtype == DT_OTHER) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s has dtype %S: expected torch.float32, "
                 "torch.float16, torch.bfloat16, torch.bool or torch.int32",
                 name, v);
    Py_DECREF(v);
    return -1;
  }
  Py_DECREF(v);
  v = PyObject_GetAttr(obj, lib.s_shape);
  if (!v)
    return -1;
  int nd = 0, ns = 0;
  int rc = int_tuple(v, name, "shape", a->shape, &nd);
  Py_DECREF(v);
  if (rc)
    return -1;
  v = PyObject_CallMethodNoArgs(obj, lib.s_stride);
  if (!v)
    return -1;
  rc = int_tuple(v, name, "stride", a->stride, &ns);
  Py_DECREF(v);
  if (rc)
    return -1;
  a->ndim = nd;
  v = PyObject_CallMethodNoArgs(obj, lib.s_data_ptr);
  if (!v)
    return -1;
  a->data = PyLong_AsVoidPtr(v);
  Py_DECREF(v);
  if (PyErr_Occurred())
    return -1;
  return 0;
}

static int from_dlpack(PyObject *obj, const char *name, arr *a) {
  PyObject *cap = PyObject_CallMethodNoArgs(obj, lib.s_dlpack);
  if (!cap)
    return -1;
  dl_managed *m = PyCapsule_GetPointer(cap, "dltensor");
  if (!m) {
    Py_DECREF(cap);
    return -1;
  }
  a->capsule = cap; /* its destructor calls the producer's deleter */
  dl_tensor *t = &m->dl_tensor;
  if (t->device.device_type != 1 /* kDLCPU */) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s is on DLPack device type %d; libattn runs on the "
                 "CPU",
                 name, (int)t->device.device_type);
    return -1;
  }
  int code = t->dtype.code, bits = t->dtype.bits;
  a->dtype = t->dtype.lanes != 1       ? DT_OTHER
             : code == 2 && bits == 32 ? DT_F32
             : code == 2 && bits == 16 ? DT_F16
             : code == 4 && bits == 16 ? DT_BF16
             : code == 6 && bits == 8  ? DT_BOOL
             : code == 0 && bits == 32 ? DT_I32
                                       : DT_OTHER;
  if (a->dtype == DT_OTHER) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s has DLPack dtype code %d, %d bits: expected "
                 "float32, float16, bfloat16, bool or int32",
                 name, code, bits);
    return -1;
  }
  if (t->ndim > MAXDIM || t->ndim < 0) {
    PyErr_Format(PyExc_ValueError, "attn: %s has %d dimensions (at most %d)",
                 name, (int)t->ndim, MAXDIM);
    return -1;
  }
  a->ndim = t->ndim;
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    a->shape[d] = t->shape[d];
    a->stride[d] = t->strides ? t->strides[d] : run;
    run *= t->shape[d];
  }
  a->data = (char *)t->data + t->byte_offset;
  return 0;
}

/* Fills a from obj (not None). writable: an output. */
static int arr_get(PyObject *obj, const char *name, int writable, arr *a) {
  memset(a, 0, sizeof *a);
  if (PyObject_CheckBuffer(obj))
    return from_buffer(obj, name, writable, a);
  int t = is_torch(obj);
  if (t < 0)
    return -1;
  if (t)
    return from_torch(obj, name, a);
  if (PyObject_HasAttr(obj, lib.s_dlpack))
    return from_dlpack(obj, name, a);
  PyErr_Format(PyExc_TypeError,
               "attn: %s is a %s: expected a numpy array, a torch CPU tensor "
               "or an object with __dlpack__",
               name, Py_TYPE(obj)->tp_name);
  return -1;
}

static int want_dtype(const arr *a, const char *name, int dt) {
  if (a->dtype == dt)
    return 0;
  PyErr_Format(PyExc_TypeError, "attn: %s must be %s, not %s", name,
               dt_names[dt], dt_names[a->dtype]);
  return -1;
}

static int64_t numel(const arr *a) {
  int64_t n = 1;
  for (int d = 0; d < a->ndim; ++d)
    n *= a->shape[d];
  return n;
}

static int c_contiguous(const arr *a) {
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    if (a->shape[d] != 1 && a->stride[d] != run)
      return 0;
    run *= a->shape[d];
  }
  return 1;
}

/* A bare-pointer operand: dtype dt, C-contiguous, exactly n elements. */
static int vec_check(const arr *a, const char *name, int dt, int64_t n,
                     const char *what) {
  if (want_dtype(a, name, dt))
    return -1;
  if (!c_contiguous(a)) {
    PyErr_Format(PyExc_ValueError, "attn: %s must be contiguous", name);
    return -1;
  }
  if (numel(a) != n) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s has %lld elements, expected %lld (%s)", name,
                 (long long)numel(a), (long long)n, what);
    return -1;
  }
  return 0;
}

enum { LAYOUT_BSHD = 0, LAYOUT_BHSD = 1, LAYOUT_THD = 2 };
static const char *const layout_names[] = {"'bshd' [batch, seq, heads, dim]",
                                           "'bhsd' [batch, heads, seq, dim]",
                                           "'thd' [total, heads, dim]"};

static attn_dtype to_attn_dtype(int dt) {
  return dt == DT_F32    ? ATTN_DTYPE_F32
         : dt == DT_F16  ? ATTN_DTYPE_F16
         : dt == DT_BF16 ? ATTN_DTYPE_BF16
                         : ATTN_DTYPE_BOOL;
}

/* Q, K, V, O and their gradients: the logical [b, s, h, d] view. */
static int qkv_tensor(const arr *a, const char *name, int layout,
                      attn_tensor *t) {
  if (a->dtype != DT_F32 && a->dtype != DT_F16 && a->dtype != DT_BF16) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s must be float32, float16 or bfloat16, not %s", name,
                 dt_names[a->dtype]);
    return -1;
  }
  int want = layout == LAYOUT_THD ? 3 : 4;
  if (a->ndim != want) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s must be %d-D for layout %s, got %d-D", name, want,
                 layout_names[layout], a->ndim);
    return -1;
  }
  static const int perm[3][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {-1, 0, 1, 2}};
  t->data = a->data;
  t->dtype = to_attn_dtype(a->dtype);
  for (int d = 0; d < 4; ++d) {
    int s = perm[layout][d];
    t->shape[d] = s < 0 ? 1 : a->shape[s];
    t->stride[d] = s < 0 ? 0 : a->stride[s];
  }
  return 0;
}

/* Bias, mask, dbias: [b, hq, sq, sk] with 1 to 4 axes (missing leading
 * axes broadcast). */
static int bm_tensor(const arr *a, const char *name, int dt, attn_tensor *t) {
  if (want_dtype(a, name, dt))
    return -1;
  if (a->ndim < 1 || a->ndim > 4) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s must have 1 to 4 axes [batch, heads_q, seq_q, "
                 "seq_k], got %d",
                 name, a->ndim);
    return -1;
  }
  int lead = 4 - a->ndim;
  t->data = a->data;
  t->dtype = to_attn_dtype(dt);
  for (int d = 0; d < 4; ++d) {
    t->shape[d] = d < lead ? 1 : a->shape[d - lead];
    t->stride[d] = d < lead ? 0 : a->stride[d - lead];
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* run(): one forward or backward call                                      */
/* ------------------------------------------------------------------------ */
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
  A_REPEAT, /* != 0: run the call |repeat| times, return seconds per
               call (wall time, or this thread's CPU time when < 0) */
  A_COUNT
};
static const char *const arg_names[A_COUNT] = {"mode",
                                               "layout",
                                               "q",
                                               "k",
                                               "v",
                                               "o",
                                               "lse",
                                               "bias",
                                               "mask",
                                               "alibi",
                                               "kv_lens",
                                               "cu_seqlens_q",
                                               "cu_seqlens_k",
                                               "sinks",
                                               "causal",
                                               "window_left",
                                               "window_right",
                                               "scale",
                                               "softcap",
                                               "threads",
                                               "dropout_p",
                                               "dropout_seed",
                                               "dout",
                                               "dq",
                                               "dk",
                                               "dv",
                                               "dbias",
                                               "dsinks",
                                               "repeat"};
/* which operands are written */
static int is_output(int i, int mode) {
  if (i == A_O)
    return mode == 0;
  if (i == A_LSE)
    return mode == 0;
  return i == A_DQ || i == A_DK || i == A_DV || i == A_DBIAS || i == A_DSINKS;
}

static double now_s(int cpu) {
  struct timespec ts;
  clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static PyObject *py_run(PyObject *self, PyObject *const *args,
                        Py_ssize_t nargs) {
  (void)self;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (nargs != A_COUNT)
    return PyErr_Format(PyExc_TypeError, "attn._attn.run takes %d arguments",
                        (int)A_COUNT);
  long mode = PyLong_AsLong(args[A_MODE]);
  long layout = PyLong_AsLong(args[A_LAYOUT]);
  long causal = PyLong_AsLong(args[A_CAUSAL]);
  long long wl = PyLong_AsLongLong(args[A_WL]);
  long long wr = PyLong_AsLongLong(args[A_WR]);
  double scale = PyFloat_AsDouble(args[A_SCALE]);
  double softcap = PyFloat_AsDouble(args[A_SOFTCAP]);
  long threads = PyLong_AsLong(args[A_THREADS]);
  double drop_p = PyFloat_AsDouble(args[A_DROP_P]);
  unsigned long long seed = PyLong_AsUnsignedLongLongMask(args[A_DROP_SEED]);
  long repeat = PyLong_AsLong(args[A_REPEAT]);
  if (PyErr_Occurred())
    return NULL;
  if ((mode != 0 && mode != 1) || layout < 0 || layout > 2 || threads < 0 ||
      threads > 1 << 20)
    return PyErr_Format(PyExc_ValueError, "attn: bad mode/layout/threads");

  arr a[A_COUNT];
  int got[A_COUNT] = {0};
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_params p;
  memset(&p, 0, sizeof p);
  lib.params_init(&p, PARAMS_SIZE);
  for (int i = A_Q; i <= A_DSINKS; ++i) {
    if (i >= A_CAUSAL && i <= A_DROP_SEED)
      continue;
    if (args[i] == Py_None)
      continue;
    if (mode == 0 && i >= A_DOUT)
      continue; /* the forward ignores the backward's operands */
    if (arr_get(args[i], arg_names[i], is_output(i, (int)mode), &a[i]) != 0) {
      arr_release(&a[i]);
      goto done;
    }
    got[i] = 1;
  }
  if (!got[A_Q] || !got[A_K] || !got[A_V] || !got[A_O]) {
    PyErr_Format(PyExc_ValueError, "attn: q, k, v and o are required");
    goto done;
  }
  if (qkv_tensor(&a[A_Q], "q", (int)layout, &p.q) ||
      qkv_tensor(&a[A_K], "k", (int)layout, &p.k) ||
      qkv_tensor(&a[A_V], "v", (int)layout, &p.v) ||
      qkv_tensor(&a[A_O], "o", (int)layout, &p.o))
    goto done;
  int64_t hq = p.q.shape[2];
  int64_t batch = p.q.shape[0];
  int64_t seq_q = p.q.shape[1];
  int varlen = got[A_CU_Q] || got[A_CU_K];
  if (varlen) {
    if (!got[A_CU_Q] || !got[A_CU_K]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: cu_seqlens_q and cu_seqlens_k go together");
      goto done;
    }
    int64_t nq = a[A_CU_Q].ndim == 1 ? a[A_CU_Q].shape[0] : -1;
    if (nq < 2) {
      PyErr_Format(PyExc_ValueError,
                   "attn: cu_seqlens_q must be 1-D with at least 2 entries "
                   "[batch + 1]");
      goto done;
    }
    if (vec_check(&a[A_CU_Q], "cu_seqlens_q", DT_I32, nq, "batch + 1") ||
        vec_check(&a[A_CU_K], "cu_seqlens_k", DT_I32, nq,
                  "the length of cu_seqlens_q"))
      goto done;
    if (batch != 1) {
      PyErr_Format(PyExc_ValueError,
                   "attn: with cu_seqlens the batch axis of q must be 1 (or "
                   "use layout 'thd'), got %lld",
                   (long long)batch);
      goto done;
    }
    p.cu_seqlens_q = a[A_CU_Q].data;
    p.cu_seqlens_k = a[A_CU_K].data;
    p.varlen_batch = nq - 1;
    batch = nq - 1;
  }
  if (got[A_LSE]) {
    if (vec_check(&a[A_LSE], "lse", DT_F32,
                  varlen ? hq * seq_q : batch * hq * seq_q,
                  varlen ? "[heads_q, total_q]" : "[batch, heads_q, seq_q]"))
      goto done;
    p.lse = a[A_LSE].data;
  }
  if (got[A_ALIBI]) {
    if (vec_check(&a[A_ALIBI], "alibi_slopes", DT_F32, hq, "[heads_q]"))
      goto done;
    p.alibi_slopes = a[A_ALIBI].data;
  }
  if (got[A_KV_LENS]) {
    if (vec_check(&a[A_KV_LENS], "kv_lens", DT_I32, batch, "[batch]"))
      goto done;
    p.kv_lens = a[A_KV_LENS].data;
  }
  if (got[A_SINKS]) {
    if (vec_check(&a[A_SINKS], "sinks", DT_F32, hq, "[heads_q]"))
      goto done;
    p.sinks = a[A_SINKS].data;
  }
  if (got[A_BIAS] && bm_tensor(&a[A_BIAS], "bias", DT_F32, &p.bias))
    goto done;
  if (got[A_MASK] && bm_tensor(&a[A_MASK], "mask", DT_BOOL, &p.mask))
    goto done;
  p.causal = (attn_causal)causal;
  p.window_left = wl;
  p.window_right = wr;
  p.scale = (float)scale;
  p.softcap = (float)softcap;
  p.num_threads = (int)threads;
  p.dropout_p = (float)drop_p;
  p.dropout_seed = seed;
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  if (mode == 1) {
    if (!got[A_DOUT] || !got[A_DQ] || !got[A_DK] || !got[A_DV] || !got[A_LSE]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: the backward needs dout, dq, dk, dv and lse");
      goto done;
    }
    if (qkv_tensor(&a[A_DOUT], "dout", (int)layout, &p.dout) ||
        qkv_tensor(&a[A_DQ], "dq", (int)layout, &p.dq) ||
        qkv_tensor(&a[A_DK], "dk", (int)layout, &p.dk) ||
        qkv_tensor(&a[A_DV], "dv", (int)layout, &p.dv))
      goto done;
    if (got[A_DBIAS]) {
      if (!got[A_BIAS]) {
        PyErr_Format(PyExc_ValueError, "attn: dbias needs bias");
        goto done;
      }
      if (a[A_DBIAS].ndim != a[A_BIAS].ndim) {
        PyErr_Format(PyExc_ValueError,
                     "attn: dbias must have exactly bias's shape");
        goto done;
      }
      if (bm_tensor(&a[A_DBIAS], "dbias", DT_F32, &p.dbias))
        goto done;
    }
    if (got[A_DSINKS]) {
      if (vec_check(&a[A_DSINKS], "dsinks", DT_F32, hq, "[heads_q]"))
        goto done;
      p.dsinks = a[A_DSINKS].data;
    }
  }

  attn_status s = ATTN_OK;
  double t0 = 0, t1 = 0;
  call_fn fn = mode == 0 ? lib.forward : lib.backward;
  Py_BEGIN_ALLOW_THREADS;
  if (repeat != 0) { /* timing: < 0 counts this thread's CPU time */
    long n = repeat < 0 ? -repeat : repeat;
    s = fn(NULL, &p, PARAMS_SIZE); /* warm up */
    t0 = now_s(repeat < 0);
    for (long r = 0; r < n && s == ATTN_OK; ++r)
      s = fn(NULL, &p, PARAMS_SIZE);
    t1 = now_s(repeat < 0);
  } else {
    s = fn(NULL, &p, PARAMS_SIZE);
  }
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK) {
    raise_status(s, msg);
    goto done;
  }
  if (repeat != 0)
    result =
        PyFloat_FromDouble((t1 - t0) / (double)(repeat < 0 ? -repeat : repeat));
  else
    result = Py_NewRef(Py_None);
done:
  for (int i = 0; i < A_COUNT; ++i)
    if (got[i])
      arr_release(&a[i]);
  return result;
}

/* ------------------------------------------------------------------------ */
/* merge(o_parts, lse_parts, o, lse, sinks, threads)                        */
/* merge_backward(o_parts, lse_parts, o, lse, sinks, threads, dout, dlse,   */
/*                do_parts, dlse_parts, dsinks)                             */
/* ------------------------------------------------------------------------ */
#define MAX_PARTS 64

static PyObject *merge_impl(PyObject *const *args, Py_ssize_t nargs,
                            int backward) {
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (nargs != (backward ? 11 : 6))
    return PyErr_Format(PyExc_TypeError, "attn._attn.merge: bad arguments");
  PyObject *op = PySequence_Fast(args[0], "o_parts must be a sequence");
  if (!op)
    return NULL;
  PyObject *lp = PySequence_Fast(args[1], "lse_parts must be a sequence");
  if (!lp) {
    Py_DECREF(op);
    return NULL;
  }
  PyObject *dop = NULL, *dlp = NULL, *result = NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(op);
  arr *parts = NULL; /* o, lse, do, dlse of each part */
  int *got = NULL;
  arr one[5]; /* o, lse, sinks, dout, dlse(in), dsinks */
  int got1[6] = {0};
  arr dsink;
  attn_tensor tparts[MAX_PARTS], dtparts[MAX_PARTS];
  const float *lptr[MAX_PARTS];
  float *dlptr[MAX_PARTS];
  char msg[512];
  msg[0] = 0;
  if (n < 1 || n > MAX_PARTS || PySequence_Fast_GET_SIZE(lp) != n) {
    PyErr_Format(PyExc_ValueError,
                 "attn: merge needs 1 to %d parts and as many LSEs as outputs",
                 MAX_PARTS);
    goto done;
  }
  if (backward) {
    dop = PySequence_Fast(args[8], "do_parts must be a sequence");
    if (!dop)
      goto done;
    if (PySequence_Fast_GET_SIZE(dop) != n) {
      PyErr_Format(PyExc_ValueError, "attn: do_parts must have %zd entries", n);
      goto done;
    }
    if (args[9] != Py_None) {
      dlp = PySequence_Fast(args[9], "dlse_parts must be a sequence");
      if (!dlp)
        goto done;
      if (PySequence_Fast_GET_SIZE(dlp) != n) {
        PyErr_Format(PyExc_ValueError, "attn: dlse_parts must have %zd entries",
                     n);
        goto done;
      }
    }
  }
  parts = PyMem_Calloc((size_t)n * 4, sizeof *parts);
  got = PyMem_Calloc((size_t)n * 4, sizeof *got);
  if (!parts || !got) {
    PyErr_NoMemory();
    goto done;
  }
  long threads = PyLong_AsLong(args[5]);
  if (threads == -1 && PyErr_Occurred())
    goto done;
  /* o (out forward, in backward) and lse */
  if (arr_get(args[2], "o", !backward, &one[0]))
    goto done;
  got1[0] = 1;
  attn_merge_params m;
  memset(&m, 0, sizeof m);
  lib.merge_init(&m, MERGE_SIZE);
  if (qkv_tensor(&one[0], "o", LAYOUT_BSHD, &m.o))
    goto done;
  int64_t b = one[0].shape[0], s = one[0].shape[1], h = one[0].shape[2];
  int64_t nlse = b * h * s;
  if (args[3] != Py_None) {
    if (arr_get(args[3], "lse", !backward, &one[1]))
      goto done;
    got1[1] = 1;
    if (vec_check(&one[1], "lse", DT_F32, nlse, "[batch, heads, seq_q]"))
      goto done;
    m.lse = one[1].data;
  }
  if (args[4] != Py_None) {
    if (arr_get(args[4], "sinks", 0, &one[2]))
      goto done;
    got1[2] = 1;
    if (vec_check(&one[2], "sinks", DT_F32, h, "[heads]"))
      goto done;
    m.sinks = one[2].data;
  }
  for (Py_ssize_t c = 0; c < n; ++c) {
    arr *pa = &parts[4 * c];
    if (arr_get(PySequence_Fast_GET_ITEM(op, c), "o_parts[i]", 0, &pa[0]))
      goto done;
    got[4 * c] = 1;
    if (qkv_tensor(&pa[0], "o_parts[i]", LAYOUT_BSHD, &tparts[c]))
      goto done;
    if (arr_get(PySequence_Fast_GET_ITEM(lp, c), "lse_parts[i]", 0, &pa[1]))
      goto done;
    got[4 * c + 1] = 1;
    if (vec_check(&pa[1], "lse_parts[i]", DT_F32, nlse,
                  "[batch, heads, seq_q]"))
      goto done;
    lptr[c] = pa[1].data;
    if (backward) {
      if (arr_get(PySequence_Fast_GET_ITEM(dop, c), "do_parts[i]", 1, &pa[2]))
        goto done;
      got[4 * c + 2] = 1;
      if (qkv_tensor(&pa[2], "do_parts[i]", LAYOUT_BSHD, &dtparts[c]))
        goto done;
      if (dlp) {
        if (arr_get(PySequence_Fast_GET_ITEM(dlp, c), "dlse_parts[i]", 1,
                    &pa[3]))
          goto done;
        got[4 * c + 3] = 1;
        if (vec_check(&pa[3], "dlse_parts[i]", DT_F32, nlse,
                      "[batch, heads, seq_q]"))
          goto done;
        dlptr[c] = pa[3].data;
      }
    }
  }
  m.n_parts = n;
  m.o_parts = tparts;
  m.lse_parts = lptr;
  m.num_threads = (int)threads;
  m.error_message = msg;
  m.error_message_size = sizeof msg;
  if (backward) {
    if (arr_get(args[6], "dout", 0, &one[3]))
      goto done;
    got1[3] = 1;
    if (qkv_tensor(&one[3], "dout", LAYOUT_BSHD, &m.dout))
      goto done;
    if (args[7] != Py_None) {
      if (arr_get(args[7], "dlse", 0, &one[4]))
        goto done;
      got1[4] = 1;
      if (vec_check(&one[4], "dlse", DT_F32, nlse, "[batch, heads, seq_q]"))
        goto done;
      m.dlse = one[4].data;
    }
    m.do_parts = dtparts;
    m.dlse_parts = dlp ? dlptr : NULL;
    if (args[10] != Py_None) {
      if (arr_get(args[10], "dsinks", 1, &dsink))
        goto done;
      got1[5] = 1;
      if (vec_check(&dsink, "dsinks", DT_F32, h, "[heads]"))
        goto done;
      m.dsinks = dsink.data;
    }
  }
  attn_status st;
  merge_fn fn = backward ? lib.merge_backward : lib.merge;
  Py_BEGIN_ALLOW_THREADS;
  st = fn(NULL, &m, MERGE_SIZE);
  Py_END_ALLOW_THREADS;
  if (st != ATTN_OK)
    raise_status(st, msg);
  else
    result = Py_NewRef(Py_None);
done:
  if (parts)
    for (Py_ssize_t i = 0; i < n * 4; ++i)
      if (got[i])
        arr_release(&parts[i]);
  for (int i = 0; i < 5; ++i)
    if (got1[i])
      arr_release(&one[i]);
  if (got1[5])
    arr_release(&dsink);
  PyMem_Free(parts);
  PyMem_Free(got);
  Py_XDECREF(dop);
  Py_XDECREF(dlp);
  Py_DECREF(op);
  Py_DECREF(lp);
  return result;
}

static PyObject *py_merge(PyObject *self, PyObject *const *args,
                          Py_ssize_t nargs) {
  (void)self;
  return merge_impl(args, nargs, 0);
}

static PyObject *py_merge_backward(PyObject *self, PyObject *const *args,
                                   Py_ssize_t nargs) {
  (void)self;
  return merge_impl(args, nargs, 1);
}

/* info(x) -> (data pointer, dtype name, shape, strides): what run() sees. */
static PyObject *py_info(PyObject *self, PyObject *obj) {
  (void)self;
  arr a;
  if (arr_get(obj, "x", 0, &a)) {
    arr_release(&a);
    return NULL;
  }
  PyObject *shape = PyTuple_New(a.ndim), *stride = PyTuple_New(a.ndim);
  for (int d = 0; shape && stride && d < a.ndim; ++d) {
    PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(a.shape[d]));
    PyTuple_SET_ITEM(stride, d, PyLong_FromLongLong(a.stride[d]));
  }
  PyObject *r = shape && stride
                    ? Py_BuildValue("(NsNN)", PyLong_FromVoidPtr(a.data),
                                    dt_names[a.dtype], shape, stride)
                    : NULL;
  arr_release(&a);
  return r;
}

static PyMethodDef methods[] = {
    {"load", py_load, METH_O, "load(path): dlopen libattn once"},
    {"set_error_factory", py_set_error_factory, METH_O,
     "set_error_factory(f): f(status, message) builds the exception"},
    {"version", py_version, METH_NOARGS, "the loaded library's version"},
    {"params_size", py_params_size, METH_NOARGS,
     "the attn_params size this extension passes (0.4's)"},
    {"run", (PyCFunction)(void (*)(void))py_run, METH_FASTCALL,
     "one attn_forward (mode 0) or attn_backward (mode 1) call"},
    {"merge", (PyCFunction)(void (*)(void))py_merge, METH_FASTCALL,
     "attn_merge"},
    {"merge_backward", (PyCFunction)(void (*)(void))py_merge_backward,
     METH_FASTCALL, "attn_merge_backward"},
    {"info", py_info, METH_O,
     "info(x) -> (data pointer, dtype, shape, strides in elements)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,
                                    "_attn",
                                    "libattn's CPython binding (internal)",
                                    -1,
                                    methods,
                                    NULL,
                                    NULL,
                                    NULL,
                                    NULL};

PyMODINIT_FUNC PyInit__attn(void);
PyMODINIT_FUNC PyInit__attn(void) {
  struct {
    PyObject **slot;
    const char *name;
  } names[] = {{&lib.s_is_cpu, "is_cpu"}, {&lib.s_layout, "layout"},
               {&lib.s_dtype, "dtype"},   {&lib.s_shape, "shape"},
               {&lib.s_stride, "stride"}, {&lib.s_data_ptr, "data_ptr"},
               {&lib.s_device, "device"}, {&lib.s_dlpack, "__dlpack__"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
    if (!*names[i].slot &&
        !(*names[i].slot = PyUnicode_InternFromString(names[i].name)))
      return NULL;
  return PyModule_Create(&module);
}
