/*
 * attn/_attn_arrays.c - arrays read in place: the buffer protocol for
 * numpy; for PyTorch, DLPack's C exchange API (torch >= 2.9: one C call
 * fills a DLTensor view, no capsule, no Python attribute) and otherwise
 * the tensor attributes data_ptr / stride / shape / dtype; __dlpack__ for
 * anything else. Their attn_tensor views, and the outputs run() allocates
 * when the caller passes none (torch.empty or numpy.empty, called with
 * objects looked up once).
 */
#include "_attn.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */
const char *const dt_names[] = {"float32", "bfloat16", "float16",
                                "bool",    "int32",    "unsupported"};

void arr_release(arr *a) {
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

/* DLPack's C exchange API (dlpack.h 1.2+), the part this file calls:
 * torch.Tensor.__dlpack_c_exchange_api__ is a capsule of this table. */
typedef struct {
  uint32_t major, minor;
  void *prev_api;
  void *managed_tensor_allocator;
  void *managed_tensor_from_py_object_no_sync;
  void *managed_tensor_to_py_object_no_sync;
  int (*dltensor_from_py_object_no_sync)(void *py_object, void *dl_tensor);
  void *current_work_stream;
} dl_exchange_api;

/* torch.Tensor's exchange API, when this torch has one (else the tensor
 * attributes are read). Never fails: a missing or foreign table only
 * leaves lib.torch_dl_from NULL. */
static void torch_exchange_lookup(void) {
  PyObject *cap = PyObject_GetAttrString(lib.torch_tensor_type,
                                         "__dlpack_c_exchange_api__");
  const dl_exchange_api *api =
      cap && PyCapsule_IsValid(cap, "dlpack_exchange_api")
          ? PyCapsule_GetPointer(cap, "dlpack_exchange_api")
          : NULL;
  PyErr_Clear();
  if (api && api->major == 1 && api->dltensor_from_py_object_no_sync) {
    lib.torch_dl_api = cap;
    lib.torch_dl_from = api->dltensor_from_py_object_no_sync;
  } else {
    Py_XDECREF(cap);
  }
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
  /* torch.nn.Parameter: read as fast as a Tensor (absent: NULL) */
  PyObject *nn = PyObject_GetAttrString(torch, "nn");
  lib.torch_param_type = nn ? PyObject_GetAttrString(nn, "Parameter") : NULL;
  Py_XDECREF(nn);
  PyErr_Clear();
  PyObject *empty = PyObject_GetAttrString(torch, "empty");
  PyObject *strided =
      empty ? PyObject_GetAttrString(torch, "empty_strided") : NULL;
  PyObject *kw = strided ? Py_BuildValue("(s)", "dtype") : NULL;
  Py_DECREF(torch);
  if (!kw) {
    Py_XDECREF(empty);
    Py_XDECREF(strided);
    for (int i = 0; i < 7; ++i)
      Py_DECREF(got[i]);
    return -1;
  }
  lib.torch_empty = empty;
  lib.torch_empty_strided = strided;
  lib.kw_dtype = kw;
  for (int i = 0; i < 7; ++i)
    *slots[i] = got[i];
  torch_exchange_lookup();
  /* attn.torch hands over attn._attn_torch's allocator when it was built
   * (set_torch_empty); without it, torch.empty from here */
  PyObject *front = PyImport_ImportModule("attn.torch");
  Py_XDECREF(front);
  PyErr_Clear();
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
  if ((PyObject *)Py_TYPE(obj) == lib.torch_tensor_type)
    return 1;
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

/* A torch.Tensor or nn.Parameter (exactly: a subclass may override the
 * attributes) on the CPU in a dtype this binding reads, through the
 * exchange API: 1 when a is filled, 0 when the attributes must be read
 * (no API, another device, dtype or layout: their error messages are the
 * attribute path's), never an error. */
static int from_torch_fast(PyObject *obj, arr *a) {
  PyObject *type = (PyObject *)Py_TYPE(obj);
  if (!lib.torch_dl_from ||
      (type != lib.torch_tensor_type && type != lib.torch_param_type))
    return 0;
  dl_tensor t;
  if (lib.torch_dl_from(obj, &t) != 0) {
    PyErr_Clear(); /* sparse, meta, ...: the slow path says why */
    return 0;
  }
  if (t.device.device_type != 1 /* kDLCPU */ || t.dtype.lanes != 1 ||
      t.ndim < 0 || t.ndim > MAXDIM)
    return 0;
  int code = t.dtype.code, bits = t.dtype.bits;
  a->dtype = code == 2 && bits == 32   ? DT_F32
             : code == 2 && bits == 16 ? DT_F16
             : code == 4 && bits == 16 ? DT_BF16
             : code == 6 && bits == 8  ? DT_BOOL
             : code == 0 && bits == 32 ? DT_I32
                                       : DT_OTHER;
  if (a->dtype == DT_OTHER)
    return 0;
  a->ndim = t.ndim;
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    a->shape[d] = t.shape[d];
    a->stride[d] = t.strides ? t.strides[d] : run;
    run *= t.shape[d];
  }
  if (run == 0) /* no elements: data_ptr()'s pointer, as before */
    return 0;
  a->data = (char *)t.data + t.byte_offset;
  return 1;
}

static int from_torch(PyObject *obj, const char *name, arr *a) {
  if (from_torch_fast(obj, a))
    return 0;
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
int arr_get(PyObject *obj, const char *name, int writable, arr *a) {
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
int vec_check(const arr *a, const char *name, int dt, int64_t n,
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
int qkv_tensor(const arr *a, const char *name, int layout, attn_tensor *t) {
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
int bm_tensor(const arr *a, const char *name, int dt, attn_tensor *t) {
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
/* Outputs run() allocates                                                  */
/* ------------------------------------------------------------------------ */
static int numpy_lookup(void) {
  if (lib.np_empty)
    return 0;
  PyObject *np = PyImport_ImportModule("numpy");
  if (!np)
    return -1;
  PyObject *empty = PyObject_GetAttrString(np, "empty");
  PyObject *dtype = PyObject_GetAttrString(np, "dtype");
  PyObject *f32 = dtype ? PyObject_CallFunction(dtype, "s", "float32") : NULL;
  PyObject *f16 = dtype ? PyObject_CallFunction(dtype, "s", "float16") : NULL;
  Py_DECREF(np);
  Py_XDECREF(dtype);
  if (!empty || !f32 || !f16) {
    Py_XDECREF(empty);
    Py_XDECREF(f32);
    Py_XDECREF(f16);
    return -1;
  }
  lib.np_f32 = f32;
  lib.np_f16 = f16;
  lib.np_empty = empty;
  return 0;
}

static PyObject *torch_dtype(int dt) {
  return dt == DT_F32   ? lib.torch_f32
         : dt == DT_F16 ? lib.torch_f16
                        : lib.torch_bf16;
}

/* torch.empty_strided: [a, b, c, d] seen over [a, c, b, d] memory. */
static PyObject *torch_empty_swap12(const int64_t *shape, int dt) {
  const int64_t st[4] = {shape[1] * shape[2] * shape[3], shape[3],
                         shape[1] * shape[3], 1};
  if (lib.torch_make)
    return lib.torch_make(4, shape, st, dt);
  PyObject *r = NULL,
           *call[3] = {PyTuple_New(4), PyTuple_New(4), torch_dtype(dt)};
  if (!call[0] || !call[1])
    goto done;
  for (int d = 0; d < 4; ++d) {
    PyObject *x = PyLong_FromLongLong(shape[d]);
    PyObject *y = x ? PyLong_FromLongLong(st[d]) : NULL;
    if (!y) {
      Py_XDECREF(x);
      goto done;
    }
    PyTuple_SET_ITEM(call[0], d, x);
    PyTuple_SET_ITEM(call[1], d, y);
  }
  r = PyObject_Vectorcall(lib.torch_empty_strided, call, 2, lib.kw_dtype);
done:
  Py_XDECREF(call[0]); /* a tuple's unset items are NULL: skipped */
  Py_XDECREF(call[1]);
  return r;
}

/* torch.empty(*shape, dtype=...) for a torch tensor (called with
 * positional sizes: PyTorch parses them faster than a tuple), else
 * numpy.empty(shape, dtype); how as arr_make's. */
static PyObject *arr_empty(PyObject *like, int ndim, const int64_t *shape,
                           int dt, int how) {
  int t = how == MAKE_NUMPY ? 0 : is_torch(like);
  if (t < 0)
    return NULL;
  if (t && how == MAKE_SWAP12 && ndim == 4)
    return torch_empty_swap12(shape, dt);
  if (t && lib.torch_make)
    return lib.torch_make(ndim, shape, NULL, dt);
  PyObject *args[MAXDIM + 1];
  PyObject *r = NULL;
  int n = 0;
  for (; n < ndim; ++n)
    if (!(args[n] = PyLong_FromLongLong(shape[n])))
      goto done;
  if (t) {
    args[n] = torch_dtype(dt);
    r = PyObject_Vectorcall(lib.torch_empty, args, (size_t)n, lib.kw_dtype);
    goto done;
  }
  if (dt == DT_BF16) {
    PyErr_Format(PyExc_TypeError, "attn: numpy has no bfloat16: pass out=");
    goto done;
  }
  if (numpy_lookup() != 0)
    goto done;
  PyObject *tuple = PyTuple_New(n);
  if (!tuple)
    goto done;
  for (int d = 0; d < n; ++d)
    PyTuple_SET_ITEM(tuple, d, args[d]);
  n = 0; /* the tuple holds them */
  PyObject *call[2] = {tuple, dt == DT_F16 ? lib.np_f16 : lib.np_f32};
  r = PyObject_Vectorcall(lib.np_empty, call, 2, NULL);
  Py_DECREF(tuple);
done:
  for (int d = 0; d < n; ++d)
    Py_DECREF(args[d]);
  return r;
}

int arr_make(PyObject *like, int ndim, const int64_t *shape, int dt, int how,
             const char *name, PyObject **made, arr *a) {
  if (dt != DT_F16 && dt != DT_BF16)
    dt = DT_F32; /* like is not a float array: its own check says so */
  *made = arr_empty(like, ndim, shape, dt, how);
  if (!*made)
    return -1;
  if (arr_get(*made, name, 1, a) != 0) {
    arr_release(a);
    return -1;
  }
  return 0;
}
