/*
 * attn/_attn.h - what the two halves of the CPython extension share:
 * _attn.c (the library loaded at run time, the calls, the module) and
 * _attn_arrays.c (reading numpy, PyTorch and DLPack arrays in place and
 * turning them into attn_tensor views).
 */
#ifndef ATTN_PY_ATTN_H
#define ATTN_PY_ATTN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "attn.h"
#include "attn/kv_cache.h"
#include "attn/linear.h"

/* The struct sizes passed to the _sized entry points: the 0.4 layouts
 * (the last field this binding sets is dropout_seed), so any libattn from
 * 0.4 on accepts them, whatever fields a newer attn.h appends. */
#define PARAMS_SIZE (offsetof(attn_params, dropout_seed) + sizeof(uint64_t))
/* With the sparse options (0.5's fields): the whole struct of this attn.h. */
#define PARAMS_SIZE_SPARSE (sizeof(attn_params))
#define MERGE_SIZE                                                             \
  (offsetof(attn_merge_params, error_message_size) + sizeof(size_t))

typedef void (*params_init_fn)(attn_params *, size_t);
typedef attn_status (*call_fn)(attn_context *, const attn_params *, size_t);
typedef const char *(*strerror_fn)(attn_status);
typedef const char *(*version_fn)(void);
typedef void (*merge_init_fn)(attn_merge_params *, size_t);
typedef attn_status (*merge_fn)(attn_context *, const attn_merge_params *,
                                size_t);
typedef void (*linear_init_fn)(attn_linear_params *, size_t);
typedef void (*cache_init_fn)(attn_kv_cache *, size_t);
typedef void (*rope_init_fn)(attn_rope *, size_t);
typedef attn_status (*cache_append_fn)(attn_context *, const attn_kv_cache *,
                                       size_t, attn_tensor, attn_tensor,
                                       const int32_t *, const attn_rope *,
                                       size_t);
typedef attn_status (*cache_attend_fn)(attn_context *, const attn_kv_cache *,
                                       size_t, const attn_params *, size_t,
                                       const attn_rope *, size_t);
typedef attn_status (*linear_fn)(attn_context *, const attn_linear_params *,
                                 size_t);

/* Module state: filled once by load(); read-only afterwards (defined in
 * _attn.c, read by _attn_arrays.c). */
struct attn_py_lib {
  void *handle;
  params_init_fn params_init;
  call_fn forward;
  call_fn backward;
  strerror_fn strerror_;
  version_fn version;
  merge_init_fn merge_init;
  merge_fn merge;
  merge_fn merge_backward;
  /* optional (0.5): NULL when the loaded library lacks them */
  linear_init_fn linear_init;
  linear_fn linear_forward;
  linear_fn linear_backward;
  cache_init_fn cache_init;
  rope_init_fn rope_init;
  cache_append_fn cache_append;
  cache_attend_fn cache_attend;
  PyObject *error_factory; /* callable(status, message) -> exception */
  /* PyTorch objects, looked up the first time a tensor is seen */
  PyObject *torch_tensor_type;
  PyObject *torch_f32, *torch_f16, *torch_bf16, *torch_bool, *torch_i32;
  PyObject *torch_strided;
  /* interned attribute names: their lookups hit the type's method cache */
  PyObject *s_is_cpu, *s_layout, *s_dtype, *s_shape, *s_stride, *s_data_ptr,
      *s_device, *s_dlpack;
  /* torch.nn.Parameter, and torch.Tensor.__dlpack_c_exchange_api__'s
   * dltensor_from_py_object_no_sync (DLPack 1.x, torch >= 2.9; NULL when
   * absent): reads a tensor's pointer, dtype, shape and strides in one C
   * call (_attn_arrays.c) */
  PyObject *torch_param_type;
  PyObject *torch_dl_api; /* the capsule, held */
  int (*torch_dl_from)(void *py_object, void *dl_tensor);
  /* outputs run() allocates (arr_empty): torch.empty and its kwnames
   * ("dtype",); numpy.empty and numpy's float32 / float16 dtypes */
  PyObject *torch_empty, *torch_empty_strided, *kw_dtype;
  /* attn._attn_torch's allocator (set_torch_empty), NULL without it */
  PyObject *(*torch_make)(int ndim, const int64_t *shape, const int64_t *stride,
                          int dt);
  PyObject *np_empty, *np_f32, *np_f16;
};
extern struct attn_py_lib lib;

enum { DT_F32, DT_BF16, DT_F16, DT_BOOL, DT_I32, DT_OTHER };
extern const char *const dt_names[];
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

/* run()'s layouts (python/attn/_api.py passes these numbers). */
enum { LAYOUT_BSHD = 0, LAYOUT_BHSD = 1, LAYOUT_THD = 2 };

/* Releases what arr_get holds (a buffer view, a DLPack capsule). */
void arr_release(arr *a);
/* Reads obj (buffer protocol, torch tensor or __dlpack__) without copying;
 * -1 with a Python exception set. */
int arr_get(PyObject *obj, const char *name, int writable, arr *a);
/* A contiguous vector of dtype dt and n elements, or -1 with an error. */
int vec_check(const arr *a, const char *name, int dt, int64_t n,
              const char *what);
/* q, k, v, o views in layout (bshd, bhsd, thd) as an attn_tensor. */
int qkv_tensor(const arr *a, const char *name, int layout, attn_tensor *t);
/* Raises the exception the Python side builds for a library status
 * (_attn.c). */
void raise_status(attn_status s, const char *msg);
/* attn._attn.linear (_attn_linear.c). */
PyObject *py_linear(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* attn._attn.cache (_attn_cache.c). */
PyObject *py_cache(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* A bias or mask tensor of dtype dt as an attn_tensor. */
int bm_tensor(const arr *a, const char *name, int dt, attn_tensor *t);
/* An output the caller left to run(): a new array of shape [ndim] and
 * dtype dt (DT_F32/F16/BF16), read into *a as the operand name; *made
 * holds the new reference. -1 with a Python exception. how: MAKE_LIKE, of
 * like's kind (torch.empty for a torch tensor, else numpy.empty),
 * C-contiguous; MAKE_NUMPY, a numpy array whatever like is (a buffer that
 * never reaches the caller: cheaper to make than a tensor); MAKE_SWAP12,
 * as MAKE_LIKE but for a 4-axis torch tensor its axes 1 and 2 swapped in
 * memory (PyTorch's [b, h, s, d] output over [b, s, h, d] memory). */
enum { MAKE_LIKE, MAKE_NUMPY, MAKE_SWAP12 };
int arr_make(PyObject *like, int ndim, const int64_t *shape, int dt, int how,
             const char *name, PyObject **made, arr *a);

/* _attn_pos.c: attn._attn.pos(op, ...) (RoPE, sinusoidal, T5, ALiBi,
 * quantised rows, compiled masks), and run()'s optional last argument
 * (position offsets, T5 bias, compiled masks, quantised K/V). */
PyObject *py_pos(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
typedef struct pos_extra {
  Py_buffer buf[4]; /* q_pos_offsets, k_pos_offsets, quantised k, v */
  int got_buf[4];
  arr arr[2]; /* rel_bias, drel_bias */
  int got_arr[2];
  void *box; /* the compiled mask in use (its busy count is held) */
} pos_extra;
/* Fills p from the extras tuple t (None: nothing) once run() has set the
 * rest of p: -1 with an exception, 0 to go on with the call, 1 when t
 * asked to compile p into a mask (done: no call). Always pair with
 * pos_extra_release. */
int pos_extra_apply(PyObject *t, int mode, int layout, attn_params *p,
                    size_t psize, pos_extra *ex);
void pos_extra_release(pos_extra *ex);

/* _attn_cache.c: the 11-tuple _positions.py and _cache.py build (base,
 * style, dims, scaling, factor, original_max_position, low_freq_factor,
 * high_freq_factor, beta_fast, beta_slow, mscale) as an attn_rope; the
 * layer and the RoPE functions read theirs with it too. 0, or -1 with a
 * Python exception set. */
int attn_py_read_rope(PyObject *t, attn_rope *r);

#endif
