/*
 * test_faults_io: the file parsers and tokenizers with each heap
 * allocation failing in turn (fault_sweep.h says what every try must
 * satisfy): .npy (parse from memory, read from a regular file and from a
 * pipe, whose buffer grows by realloc; encode, write), safetensors (parse,
 * open, read, the checkpoint writer and its readers), GGUF (from memory
 * and from a file, the array getters), JSON, WordPiece (from memory, from
 * a file, encode), byte-level BPE (build, from a GGUF, encode, decode),
 * the pictures of `attn show` (maps, HTML, PNG, SVG, terminal, from a
 * synthetic trace), and, when their pip packages are installed, the two models
 * the command line loads (bert_load + bert_embed, llama_load + a session's
 * forward): otherwise those are reported as skipped. A model load takes about a
 * second, so by default 8 of their allocations fail (the first two, the
 * last two, four spread between); ATTN_TEST_FAULT_MODELS=-1 fails every
 * one (minutes), 0 skips them. The model code returns -1 for
 * every failure (its headers), the .npy functions ATTN_ERR_OUT_OF_MEMORY.
 * Linked with attn_model (static) and --wrap (fault_inject.h).
 * Last line: "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L
#include "fault_inject.h"
#include "test_common.h"

static long n_pass, n_fail;

#include "fault_sweep.h"

#include "attn/io.h"
#include "bert.h"
#include "bpe.h"
#include "gguf.h"
#include "json.h"
#include "llama.h"
#include "locate.h"
#include "safetensors.h"
#include "safetensors_write.h"
#include "show.h"
#include "synth_trace.h"
#include "wordpiece.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#ifndef ATTN_SOURCE_DIR
#define ATTN_SOURCE_DIR "."
#endif

static char tmpdir[256];

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  const long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = (unsigned char *)tc_alloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

static int spit(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  const size_t w = fwrite(b, 1, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

/* One case of this file: which call, its inputs and what it returned. */
typedef struct icase {
  int which;
  const unsigned char *img; /* an input image */
  size_t img_n;
  char path[512];
  char err[256];
  /* results */
  attn_npy a;
  unsigned char buf[512]; /* an encoded image */
  size_t buf_n;
  st_file st;
  int st_open;
  gguf_file *g;
  gguf_str *strs;
  int32_t *ints;
  uint64_t n_strs, n_ints;
  json_doc doc;
  wordpiece *wp;
  bpe *bp;
  int32_t *ids;
  int64_t n_ids;
  char *text;
  size_t text_n;
  float floats[64];
  /* inputs built once */
  const wordpiece *wp_in;
  const bpe *bp_in;
  const gguf_file *g_in;
  /* a pipe fed by a thread (npy from a stream) */
  int pipe_rd, pipe_wr;
  pthread_t writer;
  int writing;
} icase;

static void *feed(void *arg) {
  icase *c = (icase *)arg;
  const int fd = c->pipe_wr;
  size_t off = 0;
  while (off < c->img_n) {
    const ssize_t w = write(fd, c->img + off, c->img_n - off);
    if (w <= 0)
      break; /* the reader closed its end (EPIPE): it stopped early */
    off += (size_t)w;
  }
  close(fd);
  return NULL;
}

static void stop_pipe(icase *c) {
  if (!c->writing)
    return;
  close(c->pipe_rd);
  pthread_join(c->writer, NULL);
  c->writing = 0;
}

static void i_prepare(void *st) {
  icase *c = (icase *)st;
  if (c->which == 2) { /* a fresh pipe with its writer */
    stop_pipe(c);
    int fds[2];
    if (pipe(fds) != 0) {
      CHECK(0, "pipe");
      return;
    }
    c->pipe_rd = fds[0];
    c->pipe_wr = fds[1];
    CHECK(pthread_create(&c->writer, NULL, feed, c) == 0, "writer thread");
    c->writing = 1;
    snprintf(c->path, sizeof c->path, "/dev/fd/%d", fds[0]);
  }
}

static attn_status i_call(void *st) {
  icase *c = (icase *)st;
  const size_t E = sizeof c->err;
  switch (c->which) {
  case 0:
    return attn_npy_parse(c->img, c->img_n, &c->a, c->err, E);
  case 1:
  case 2:
    return attn_npy_read(c->path, &c->a, c->err, E);
  case 3: { /* encode into a buffer of the size asked */
    const int64_t shape[2] = {3, 5};
    size_t len = 0;
    attn_status s = attn_npy_encode(ATTN_NPY_F32, 2, shape, c->img, NULL, 0,
                                    &len, c->err, E);
    if (s != ATTN_OK)
      return s;
    if (len > sizeof c->buf)
      return ATTN_ERR_INVALID_ARGUMENT;
    c->buf_n = len;
    s = attn_npy_encode(ATTN_NPY_F32, 2, shape, c->img, c->buf, len, &len,
                        c->err, E);
    if (s == ATTN_OK)
      s = attn_npy_write(c->path, ATTN_NPY_F32, 2, shape, c->img, c->err, E);
    return s;
  }
  case 4:
    return st_parse(c->img, c->img_n, &c->st, c->err, E) == 0 ? ATTN_OK : -1;
  case 5: {
    if (st_open(c->path, &c->st, c->err, E) != 0)
      return -1;
    const st_tensor *t = st_find(&c->st, "w");
    const int64_t shape[2] = {4, 6};
    if (!t || st_read_f32(t, 2, shape, c->floats, 24, c->err, E) != 0) {
      st_close(&c->st);
      memset(&c->st, 0, sizeof c->st);
      return -2;
    }
    return ATTN_OK;
  }
  case 6: { /* the checkpoint writer and its readers */
    const stwrite_tensor t[2] = {
        {"w", STWRITE_F32, 2, {4, 6, 0, 0}, c->img},
        {"step", STWRITE_I64, 0, {0, 0, 0, 0}, c->img}};
    const char *meta[2] = {"format", "pt"};
    char v[32];
    if (stwrite_file(c->path, t, 2, meta, 1, c->err, E) != 0 ||
        stwrite_read_f32(c->path, "w", c->floats, 24, c->err, E) != 0 ||
        stwrite_read_meta(c->path, "format", v, sizeof v, c->err, E) != 0)
      return -1;
    c->floats[30] = (float)v[0];
    return ATTN_OK;
  }
  case 7:
    return gguf_open_memory(c->img, c->img_n, &c->g, c->err, E) == 0 ? ATTN_OK
                                                                     : -1;
  case 8:
    return gguf_open(c->path, &c->g, c->err, E) == 0 ? ATTN_OK : -1;
  case 9:
    if (gguf_get_string_array(c->g_in, "tokenizer.ggml.tokens", &c->strs,
                              &c->n_strs, c->err, E) != 0)
      return -1;
    if (gguf_get_i32_array(c->g_in, "tokenizer.ggml.token_type", &c->ints,
                           &c->n_ints, c->err, E) != 0) {
      free(c->strs);
      c->strs = NULL;
      return -1;
    }
    return ATTN_OK;
  case 10:
    return json_parse((const char *)c->img, c->img_n, &c->doc, c->err, E) == 0
               ? ATTN_OK
               : -1;
  case 11:
    return wordpiece_from_memory((const char *)c->img, c->img_n, &c->wp, c->err,
                                 E) == 0
               ? ATTN_OK
               : -1;
  case 12:
    return wordpiece_load(c->path, &c->wp, c->err, E) == 0 ? ATTN_OK : -1;
  case 13:
    return wordpiece_encode(c->wp_in, (const char *)c->img, c->img_n, 0,
                            &c->ids, &c->n_ids, c->err, E) == 0
               ? ATTN_OK
               : -1;
  case 14:
    return bpe_from_gguf(c->g_in, &c->bp, c->err, E) == 0 ? ATTN_OK : -1;
  case 15:
    return bpe_encode(c->bp_in, (const char *)c->img, c->img_n, 1, &c->ids,
                      &c->n_ids, c->err, E) == 0
               ? ATTN_OK
               : -1;
  default: { /* bpe_decode of the encoding of img */
    int32_t *ids = NULL;
    int64_t n = 0;
    if (bpe_encode(c->bp_in, (const char *)c->img, c->img_n, 1, &ids, &n,
                   c->err, E) != 0)
      return -1;
    const int r = bpe_decode(c->bp_in, ids, n, &c->text, &c->text_n, c->err, E);
    free(ids);
    return r == 0 ? ATTN_OK : -1;
  }
  }
}

static uint64_t i_digest(void *st) {
  icase *c = (icase *)st;
  uint64_t h = 0;
  switch (c->which) {
  case 0:
  case 1:
  case 2:
    h = fs_hash(0, c->a.shape, sizeof c->a.shape);
    return fs_hash(h, c->a.data, c->a.nbytes);
  case 3: {
    size_t n = 0;
    unsigned char *b = slurp(c->path, &n);
    h = fs_hash(fs_hash(0, c->buf, c->buf_n), b, b ? n : 0);
    free(b);
    return h;
  }
  case 4:
  case 5:
    for (int64_t i = 0; i < c->st.n; i++) {
      const st_tensor *t = &c->st.tensors[i];
      h = fs_hash(h, t->name, strlen(t->name));
      h = fs_hash(h, t->shape, sizeof t->shape);
      h = fs_hash(h, t->data, (size_t)t->nbytes);
    }
    return fs_hash(h, c->floats, sizeof c->floats);
  case 6:
    return fs_hash(0, c->floats, sizeof c->floats);
  case 7:
  case 8:
    for (int64_t i = 0; i < gguf_n_kv(c->g); i++)
      h = fs_hash(h, gguf_kv_at(c->g, i)->key.s, gguf_kv_at(c->g, i)->key.len);
    for (int64_t i = 0; i < gguf_n_tensors(c->g); i++)
      h = fs_hash(h, &gguf_tensor_at(c->g, i)->n_elements, sizeof(int64_t));
    return h;
  case 9:
    for (uint64_t i = 0; i < c->n_strs; i++)
      h = fs_hash(h, c->strs[i].s, c->strs[i].len);
    return fs_hash(h, c->ints, c->n_ints * sizeof(int32_t));
  case 10:
    return fs_hash(0, c->doc.nodes, (size_t)c->doc.n * sizeof(json_node));
  case 11:
  case 12:
    h = fs_hash(0, &(int64_t){wordpiece_vocab_size(c->wp)}, sizeof(int64_t));
    for (int32_t i = 0; i < wordpiece_vocab_size(c->wp); i++) {
      const char *t = wordpiece_token(c->wp, i);
      h = fs_hash(h, t, strlen(t) + 1);
      h = fs_hash(h, &(int32_t){wordpiece_id(c->wp, t)}, sizeof(int32_t));
    }
    return h;
  case 14: {
    int32_t *ids = NULL;
    int64_t n = 0;
    const char *s = "Hello world, 123 <|im_start|>!";
    if (bpe_encode(c->bp, s, strlen(s), 1, &ids, &n, c->err, sizeof c->err))
      return 1;
    h = fs_hash(0, ids, (size_t)n * sizeof *ids);
    free(ids);
    return fs_hash(h, &(int64_t){bpe_vocab_size(c->bp)}, sizeof(int64_t));
  }
  case 13:
  case 15:
    return fs_hash(0, c->ids, (size_t)c->n_ids * sizeof(int32_t));
  default:
    return fs_hash(0, c->text, c->text_n);
  }
}

static void i_release(void *st) {
  icase *c = (icase *)st;
  attn_npy_free(&c->a);
  if (c->which == 4 || c->which == 5)
    st_close(&c->st);
  memset(&c->st, 0, sizeof c->st);
  if (c->which == 7 || c->which == 8)
    gguf_close(c->g);
  c->g = NULL;
  free(c->strs);
  free(c->ints);
  c->strs = NULL;
  c->ints = NULL;
  json_free(&c->doc);
  wordpiece_free(c->wp);
  c->wp = NULL;
  bpe_free(c->bp);
  c->bp = NULL;
  free(c->ids);
  c->ids = NULL;
  free(c->text);
  c->text = NULL;
}

static void run_io(icase *c, const char *name, int oom_status) {
  fault_case f = {0};
  f.name = name;
  f.st = c;
  f.prepare = i_prepare;
  f.call = i_call;
  f.digest = i_digest;
  f.release = i_release;
  f.msg = c->err;
  f.msg_size = sizeof c->err;
  f.oom_status = oom_status;
  fault_run(&f);
  stop_pipe(c);
}

/* A safetensors image: two tensors and metadata. */
static unsigned char *st_image(size_t *n) {
  static const char hdr[] =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"w\":{\"dtype\":\"F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},"
      "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[96,102]}}";
  const size_t hl = sizeof hdr - 1, total = 8 + hl + 102;
  unsigned char *b = (unsigned char *)tc_alloc(total);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, hdr, hl);
  for (int i = 0; i < 24; i++) {
    const float x = 0.25f * (float)i - 2.0f;
    memcpy(b + 8 + hl + 4 * i, &x, 4);
  }
  for (int i = 0; i < 6; i++)
    b[8 + hl + 96 + i] = (unsigned char)(0x3c + i);
  *n = total;
  return b;
}

static const char vocab_txt[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nquick\nbrown\nfox\n##es\n"
    "jump\n##ed\nover\nlazy\ndog\n,\n.\n!\nca\n##fe\n\xc3\xa9\n##\xc3\xa9\n"
    "a\n##b\n##c\n";

static void parser_calls(void) {
  printf("parsers and tokenizers:\n");
  icase c;
  char name[128];
  tc_rng r = {5};
  /* .npy */
  float *x = (float *)tc_alloc(786432 * sizeof(float)); /* 3 MiB */
  for (int i = 0; i < 786432; i++)
    x[i] = (float)tc_normal(&r);
  const int64_t shape[2] = {768, 1024};
  size_t len = 0;
  attn_npy_encode(ATTN_NPY_F32, 2, shape, x, NULL, 0, &len, NULL, 0);
  unsigned char *npy = (unsigned char *)tc_alloc(len);
  CHECK(attn_npy_encode(ATTN_NPY_F32, 2, shape, x, npy, len, &len, NULL, 0) ==
            ATTN_OK,
        "npy image");
  static const char *npy_names[4] = {"attn_npy_parse",
                                     "attn_npy_read (regular file)",
                                     "attn_npy_read (pipe, growing buffer)",
                                     "attn_npy_encode + attn_npy_write"};
  for (int w = 0; w <= 3; w++) {
    memset(&c, 0, sizeof c);
    c.which = w;
    c.img = w == 3 ? (const unsigned char *)x : npy;
    c.img_n = len;
    snprintf(c.path, sizeof c.path, "%s/a.npy", tmpdir);
    if (w == 1)
      CHECK(spit(c.path, npy, len) == 0, "write %s", c.path);
    run_io(&c, npy_names[w], ATTN_ERR_OUT_OF_MEMORY);
  }
  /* safetensors */
  size_t stn = 0;
  unsigned char *sti = st_image(&stn);
  for (int w = 4; w <= 6; w++) {
    memset(&c, 0, sizeof c);
    c.which = w;
    c.img = w == 6 ? (const unsigned char *)x : sti;
    c.img_n = stn;
    snprintf(c.path, sizeof c.path, "%s/%s.safetensors", tmpdir,
             w == 5 ? "a" : "ckpt");
    if (w == 5)
      CHECK(spit(c.path, sti, stn) == 0, "write %s", c.path);
    run_io(&c,
           w == 4   ? "st_parse"
           : w == 5 ? "st_open + st_read_f32"
                    : "stwrite_file + stwrite_read_f32 + stwrite_read_meta",
           -1);
  }
  /* GGUF and the BPE tokenizer it holds */
  char gpath[512];
  snprintf(gpath, sizeof gpath, "%s/fuzz/corpus/gguf/seed_tokenizer.gguf",
           ATTN_SOURCE_DIR);
  size_t gn = 0;
  unsigned char *gimg = slurp(gpath, &gn);
  CHECK(gimg != NULL, "%s missing", gpath);
  gguf_file *g = NULL;
  bpe *bp = NULL;
  char err[256] = "";
  if (gimg) {
    CHECK(gguf_open_memory(gimg, gn, &g, err, sizeof err) == 0, "gguf: %s",
          err);
    CHECK(g && bpe_from_gguf(g, &bp, err, sizeof err) == 0, "bpe: %s", err);
  }
  static const char text[] =
      "Hello world, the quick brown fox jumped 12345 times!\n  "
      "<|im_start|>caf\xc3\xa9 \xe2\x82\xac 3.14";
  for (int w = 7; w <= 16 && g && bp; w++) {
    if (w >= 10 && w <= 13)
      continue;
    memset(&c, 0, sizeof c);
    c.which = w;
    c.img = w >= 15 ? (const unsigned char *)text : gimg;
    c.img_n = w >= 15 ? sizeof text - 1 : gn;
    c.g_in = g;
    c.bp_in = bp;
    snprintf(c.path, sizeof c.path, "%s", gpath);
    static const char *gn_names[] = {"gguf_open_memory",
                                     "gguf_open",
                                     "gguf string/i32 arrays",
                                     "",
                                     "",
                                     "",
                                     "",
                                     "bpe_from_gguf",
                                     "bpe_encode",
                                     "bpe_decode"};
    run_io(&c, gn_names[w - 7], -1);
  }
  /* JSON */
  memset(&c, 0, sizeof c);
  c.which = 10;
  c.img = sti + 8;
  c.img_n = stn - 8 - 102;
  run_io(&c, "json_parse", -1);
  /* WordPiece */
  wordpiece *wp = NULL;
  CHECK(wordpiece_from_memory(vocab_txt, sizeof vocab_txt - 1, &wp, err,
                              sizeof err) == 0,
        "vocab: %s", err);
  for (int w = 11; w <= 13; w++) {
    static const char wtext[] =
        "The quick brown foxes jumped over the lazy dog, caf\xc3\xa9! abc "
        "unknownword \xe4\xb8\xad";
    memset(&c, 0, sizeof c);
    c.which = w;
    c.img = w == 13 ? (const unsigned char *)wtext
                    : (const unsigned char *)vocab_txt;
    c.img_n = w == 13 ? sizeof wtext - 1 : sizeof vocab_txt - 1;
    c.wp_in = wp;
    snprintf(c.path, sizeof c.path, "%s/vocab.txt", tmpdir);
    if (w == 12)
      CHECK(spit(c.path, vocab_txt, sizeof vocab_txt - 1) == 0, "vocab file");
    snprintf(name, sizeof name, "%s",
             w == 11   ? "wordpiece_from_memory"
             : w == 12 ? "wordpiece_load"
                       : "wordpiece_encode");
    run_io(&c, name, -1);
  }
  wordpiece_free(wp);
  bpe_free(bp);
  gguf_close(g);
  free(gimg);
  free(sti);
  free(npy);
  free(x);
}

/* ---- the pictures of `attn show` (a synthetic trace) -----------------------
 */
typedef struct pcase {
  int which;
  const model_trace *t;
  const attnmap_view *v_in;
  attnmap_view v;
  char path[512];
  char err[256];
  char *term;
} pcase;

static attn_status p_call(void *st) {
  pcase *p = (pcase *)st;
  show_input in = {p->t, p->v_in, "a synthetic trace", 1, 2, 5};
  int r;
  switch (p->which) {
  case 0: /* exact maps */
    r = attnmap_view_build(&p->v, p->t, -1, 0, 1, NULL, p->err, sizeof p->err);
    break;
  case 1: /* pooled maps and zoom rows, three threads */
    r = attnmap_view_build(&p->v, p->t, 1, 150, 3, NULL, p->err, sizeof p->err);
    break;
  case 2:
    r = show_html(&in, p->path, p->err, sizeof p->err);
    break;
  case 3:
    r = show_png_head(&in, 1, 2, p->path, p->err, sizeof p->err);
    break;
  case 4:
    r = show_png_layer(&in, 0, p->path, p->err, sizeof p->err);
    break;
  case 5:
    r = show_svg_head(&in, 0, 3, p->path, p->err, sizeof p->err);
    break;
  default:
    p->term = show_term(&in, 1);
    if (!p->term)
      snprintf(p->err, sizeof p->err, "show_term: out of memory");
    r = p->term ? 0 : -1;
  }
  return r == 0 ? ATTN_OK : -1;
}
static uint64_t p_digest(void *st) {
  pcase *p = (pcase *)st;
  if (p->which <= 1) {
    const size_t n = (size_t)(p->v.n_layers * p->v.heads_q * p->v.n_blocks *
                              p->v.n_blocks_k);
    uint64_t h = fs_hash(0, p->v.maps, n * sizeof(float));
    if (p->v.zoom)
      h = fs_hash(h, p->v.zoom,
                  (size_t)(p->v.heads_q * p->v.zoom_rows * p->v.seq_k) *
                      sizeof(float));
    return h;
  }
  if (p->which == 6)
    return fs_hash(0, p->term, strlen(p->term));
  size_t n = 0;
  unsigned char *b = slurp(p->path, &n);
  const uint64_t h = fs_hash(0, b, b ? n : 0);
  free(b);
  return h;
}
static void p_release(void *st) {
  pcase *p = (pcase *)st;
  attnmap_view_free(&p->v);
  memset(&p->v, 0, sizeof p->v);
  free(p->term);
  p->term = NULL;
}

static void picture_calls(void) {
  printf("pictures:\n");
  model_trace small, big;
  memset(&small, 0, sizeof small);
  memset(&big, 0, sizeof big);
  CHECK(synth_trace(&small, 2, 23, 4, 2, 16, 1, 2.0f, 7, NULL) == 0, "trace");
  CHECK(synth_trace(&big, 2, 300, 2, 1, 8, 1, 2.0f, 8, NULL) == 0, "trace");
  attnmap_view v;
  char err[256];
  CHECK(attnmap_view_build(&v, &small, -1, 0, 1, NULL, err, sizeof err) == 0,
        "view: %s", err);
  static const char *names[7] = {"attnmap_view_build (exact)",
                                 "attnmap_view_build (pooled, zoom)",
                                 "show_html",
                                 "show_png_head",
                                 "show_png_layer",
                                 "show_svg_head",
                                 "show_term"};
  static const char *ext[7] = {"", "", "html", "png", "png", "svg", ""};
  for (int w = 0; w < 7; w++) {
    pcase p;
    memset(&p, 0, sizeof p);
    p.which = w;
    p.t = w == 1 ? &big : &small;
    p.v_in = &v;
    snprintf(p.path, sizeof p.path, "%s/pic.%s", tmpdir, ext[w]);
    fault_case f = {0};
    f.name = names[w];
    f.st = &p;
    f.call = p_call;
    f.digest = p_digest;
    f.release = p_release;
    f.msg = p.err;
    f.msg_size = sizeof p.err;
    f.oom_status = -1;
    fault_run(&f);
  }
  attnmap_view_free(&v);
  model_trace_free(&small);
  model_trace_free(&big);
}

/* ---- the models (when their pip packages are installed) ------------------ */
typedef struct mcase {
  int decoder;
  char dir[4096];
  char err[512];
  bert *b;
  llama *l;
  llama_session *s;
  float *out;
  int64_t n_out;
} mcase;

static attn_status mo_call(void *st) {
  mcase *m = (mcase *)st;
  if (!m->decoder) {
    if (bert_load(m->dir, &m->b, m->err, sizeof m->err) != 0)
      return -1;
    const char *texts[2] = {"the quick brown fox", "jumped"};
    if (bert_embed(m->b, texts, 2, 1, m->out, m->err, sizeof m->err) != 0) {
      bert_free(m->b);
      m->b = NULL;
      return -1;
    }
    return ATTN_OK;
  }
  if (llama_load(m->dir, 1, &m->l, m->err, sizeof m->err) != 0)
    return -1;
  const int32_t ids[4] = {1, 17, 300, 5};
  if (llama_session_create(m->l, 16, &m->s, m->err, sizeof m->err) != 0 ||
      llama_forward(m->s, ids, 4, m->out, NULL, m->err, sizeof m->err) != 0) {
    llama_session_free(m->s);
    llama_free(m->l);
    m->s = NULL;
    m->l = NULL;
    return -1;
  }
  return ATTN_OK;
}
static uint64_t mo_digest(void *st) {
  mcase *m = (mcase *)st;
  return fs_hash(0, m->out, (size_t)m->n_out * sizeof(float));
}
static void mo_release(void *st) {
  mcase *m = (mcase *)st;
  bert_free(m->b);
  llama_session_free(m->s);
  llama_free(m->l);
  m->b = NULL;
  m->s = NULL;
  m->l = NULL;
}

/* tries: failing tries per model (-1: every allocation). */
static void model_calls(long tries) {
  printf("models (%s):\n",
         tries < 0 ? "every allocation" : "a sample of the allocations");
  for (int dec = 0; dec <= 1; dec++) {
    mcase m;
    memset(&m, 0, sizeof m);
    m.decoder = dec;
    if (model_locate(dec ? MODEL_DECODER : MODEL_ENCODER, NULL, m.dir,
                     sizeof m.dir, m.err, sizeof m.err) != 0) {
      printf("  %s: skipped (%s)\n", dec ? "llama_load" : "bert_load", m.err);
      continue;
    }
    m.n_out = dec ? 49152 : 2 * 384;
    m.out = (float *)tc_alloc((size_t)m.n_out * sizeof(float));
    fault_case f = {0};
    f.name = dec ? "llama_load + session + forward" : "bert_load + bert_embed";
    f.st = &m;
    f.call = mo_call;
    f.digest = mo_digest;
    f.release = mo_release;
    f.msg = m.err;
    f.msg_size = sizeof m.err;
    f.oom_status = -1;
    f.max_tries = tries < 0 ? 0 : tries;
    fault_run(&f);
    free(m.out);
  }
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress in a log */
  signal(SIGPIPE, SIG_IGN); /* the pipe's writer when the reader stops */
  snprintf(tmpdir, sizeof tmpdir, "/tmp/attn-faults-XXXXXX");
  if (!mkdtemp(tmpdir))
    return 2;
  { /* the default context (the models' calls use it) and its pool's
     * workers, before counting */
    float q[4 * 2 * 32] = {0}, o[4 * 2 * 32];
    attn_params p;
    attn_params_init(&p);
    p.q = p.k = p.v = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, 4, 2, 32);
    p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, 4, 2, 32);
    p.num_threads = 4;
    CHECK(attn_forward(NULL, &p) == ATTN_OK, "warm-up");
  }
  const double t0 = tc_now();
  parser_calls();
  picture_calls();
  /* the models take a second or more per call: by default a sample of
   * their allocations fail (ATTN_TEST_FAULT_MODELS: tries per model, -1
   * every allocation, 0 none) */
  const long tries = (long)tc_env_ll("ATTN_TEST_FAULT_MODELS", 8);
  if (tries != 0)
    model_calls(tries);
  fault_summary();
  printf("(%.1f s)\n", tc_now() - t0);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    printf("note: could not remove %s\n", tmpdir);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
