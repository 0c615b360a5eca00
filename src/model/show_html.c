/*
 * show_html.c - attention.html: the page template (show_page.html, built
 * in as show_page.h by CMake) with the data in place of its marker, as
 * JSON:
 *
 *   model, text, tokens[n], key_tokens[n_k], layers, heads, kv_heads,
 *   causal (bottom-right: query i sees keys j <= i + n_k - n),
 *   block, blocks, labels[blocks]       (block 1: the tokens themselves)
 *   blocks_k, labels_k[blocks_k]        the keys (== the queries' for
 *                                       self-attention)
 *   max[layers * heads]                 largest value of each map
 *   maps   base64 of uint16 little-endian (layers, heads, blocks, blocks_k),
 *          value = q / 65535 * max of its map (resolution 1.5e-5 of it)
 *   zoom   null, or {layer, row0, rows, max[heads], data: uint16 base64
 *          (heads, rows, n_k)}: the exact rows of a long input
 *   init   {layer, head, token}: what the page opens on
 *
 * Sizes: exact maps up to ATTNMAP_EXACT_MAX tokens, so at most
 * 128 x 128 x 2 bytes a head before base64: 30 layers x 9 heads (the
 * decoder) is 11.8 MB of page at worst, the encoder's 72 heads 3.1 MB;
 * a sentence of ten tokens is a few tens of kB.
 */
#include "show.h"

#include "show_page.h" /* generated: static const unsigned char show_page[] */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MARKER[] = "/*@ATTN_DATA@*/";

static uint16_t quant(float x, float top) {
  double t = (double)x / (double)top * 65535.0;
  if (!(t > 0)) /* also NaN */
    return 0;
  return t >= 65535.0 ? 65535 : (uint16_t)lrint(t);
}

/* n values, each scaled by the max of its group of per values, as base64
 * of uint16 little-endian. */
static void base64_u16(show_buf *b, const float *x, int64_t n, int64_t per,
                       const float *maxes) {
  static const char A[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  unsigned char in[3];
  int have = 0;
  char out[4];
  show_buf_add(b, "\"", 1);
  for (int64_t i = 0; i < 2 * n; i++) {
    const uint16_t q = quant(x[i / 2], maxes[i / 2 / per]);
    in[have++] = (unsigned char)(i % 2 ? q >> 8 : q & 0xFF);
    if (have == 3) {
      out[0] = A[in[0] >> 2];
      out[1] = A[(in[0] & 3) << 4 | in[1] >> 4];
      out[2] = A[(in[1] & 15) << 2 | in[2] >> 6];
      out[3] = A[in[2] & 63];
      show_buf_add(b, out, 4);
      have = 0;
    }
  }
  if (have) {
    if (have == 1)
      in[1] = 0;
    in[2] = 0;
    out[0] = A[in[0] >> 2];
    out[1] = A[(in[0] & 3) << 4 | in[1] >> 4];
    out[2] = have == 2 ? A[(in[1] & 15) << 2] : '=';
    out[3] = '=';
    show_buf_add(b, out, 4);
  }
  show_buf_add(b, "\"", 1);
}

static void json_floats(show_buf *b, const float *x, int64_t n) {
  show_buf_add(b, "[", 1);
  for (int64_t i = 0; i < n; i++)
    show_buf_printf(b, "%s%.9g", i ? "," : "", (double)x[i]);
  show_buf_add(b, "]", 1);
}

/* The JSON object described at the top; maxima in maxes (layers * heads)
 * and zmax (heads), owned by the caller. */
static void page_data(show_buf *b, const show_input *in, float *maxes,
                      float *zmax) {
  const attnmap_view *v = in->view;
  const model_trace *t = in->trace;
  const int64_t nb = v->n_blocks, nbk = v->n_blocks_k, per = nb * nbk,
                maps = v->n_layers * v->heads_q;
  show_buf_str(b, "{\"model\":");
  show_buf_json(b, t->model);
  show_buf_str(b, ",\"text\":");
  show_buf_json(b, in->text ? in->text : "");
  show_buf_str(b, ",\"tokens\":[");
  for (int64_t i = 0; i < v->seq; i++) {
    if (i)
      show_buf_add(b, ",", 1);
    show_buf_json(b, model_trace_query_token(t, i));
  }
  show_buf_str(b, "],\"key_tokens\":[");
  for (int64_t j = 0; j < v->seq_k; j++) {
    if (j)
      show_buf_add(b, ",", 1);
    show_buf_json(b, model_trace_key_token(t, j));
  }
  show_buf_printf(b,
                  "],\"layers\":%lld,\"heads\":%lld,\"kv_heads\":%lld,"
                  "\"causal\":%d,\"block\":%lld,\"blocks\":%lld,\"labels\":[",
                  (long long)v->n_layers, (long long)v->heads_q,
                  (long long)v->heads_kv, v->causal ? 1 : 0,
                  (long long)v->block, (long long)nb);
  for (int64_t k = 0; k < nb; k++) {
    char lab[64];
    show_block_label(in, k, lab, sizeof lab);
    if (k)
      show_buf_add(b, ",", 1);
    show_buf_json(b, lab);
  }
  show_buf_printf(b, "],\"blocks_k\":%lld,\"labels_k\":[", (long long)nbk);
  for (int64_t k = 0; k < nbk; k++) {
    char lab[64];
    show_key_label(in, k, lab, sizeof lab);
    if (k)
      show_buf_add(b, ",", 1);
    show_buf_json(b, lab);
  }
  show_buf_str(b, "],\"max\":");
  for (int64_t m = 0; m < maps; m++)
    maxes[m] = show_max(v->maps + m * per, per);
  json_floats(b, maxes, maps);
  show_buf_str(b, ",\"maps\":");
  base64_u16(b, v->maps, maps * per, per, maxes);
  show_buf_str(b, ",\"zoom\":");
  if (v->zoom) {
    const int64_t zper = v->zoom_rows * v->seq_k;
    for (int64_t h = 0; h < v->heads_q; h++)
      zmax[h] = show_max(v->zoom + h * zper, zper);
    show_buf_printf(b, "{\"layer\":%lld,\"row0\":%lld,\"rows\":%lld,\"max\":",
                    (long long)v->zoom_layer, (long long)v->zoom_row0,
                    (long long)v->zoom_rows);
    json_floats(b, zmax, v->heads_q);
    show_buf_str(b, ",\"data\":");
    base64_u16(b, v->zoom, v->heads_q * zper, zper, zmax);
    show_buf_str(b, "}");
  } else {
    show_buf_str(b, "null");
  }
  show_buf_printf(b, ",\"init\":{\"layer\":%lld,\"head\":%lld,\"token\":%lld}}",
                  (long long)in->layer, (long long)in->head,
                  (long long)in->token);
}

int show_html(const show_input *in, const char *path, char *err,
              size_t err_size) {
  const char *page = (const char *)show_page;
  const char *mark = strstr(page, MARKER);
  if (!mark) {
    snprintf(err, err_size, "the page template has no data marker");
    return -1;
  }
  const attnmap_view *v = in->view;
  float *maxes = malloc((size_t)(v->n_layers * v->heads_q) * sizeof *maxes);
  float *zmax = malloc((size_t)v->heads_q * sizeof *zmax);
  show_buf b = {0};
  if (!maxes || !zmax) {
    b.failed = 1;
  } else {
    show_buf_add(&b, page, (size_t)(mark - page));
    page_data(&b, in, maxes, zmax);
    show_buf_str(&b, mark + strlen(MARKER));
  }
  int rc = show_buf_save(&b, path, err, err_size);
  free(b.s);
  free(maxes);
  free(zmax);
  return rc;
}
