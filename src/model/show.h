/*
 * show.h - the pictures of `attn show`, drawn from a trace and its view
 * (attnmap.h): one self-contained HTML page (show_html.c), PNG heat maps
 * (show_png.c), SVG heat maps (show_svg.c) and the terminal view
 * (show_term.c). What they share is in show.c: the colour scale, token
 * labels, JSON and XML escaping.
 *
 * Colour scale: viridis (perceptually uniform, readable by colour-blind
 * people and in grey), linear from 0 to the largest value of the map drawn
 * (a grid of heads: of the layer), the bar labelled with both ends. Keys a
 * causal mask hides are a neutral grey (hatched on the page), never a
 * colour of the scale. None of these functions prints.
 */
#ifndef ATTN_MODEL_SHOW_H
#define ATTN_MODEL_SHOW_H

#include "attnmap.h"
#include "trace.h"

#include <stddef.h>
#include <stdint.h>

typedef struct show_input {
  const model_trace *trace;   /* tokens, model name                     */
  const attnmap_view *view;   /* the maps                                */
  const char *text;           /* the sentence, as given                  */
  int64_t layer, head, token; /* the chosen ones (token: a query index) */
} show_input;

/* --- show.c ------------------------------------------------------------ */
/* The colour of t in [0, 1] (clamped; NaN is 0) on the scale. */
void show_color(double t, unsigned char rgb[3]);
/* The largest finite value of n floats, at least 1e-30. */
float show_max(const float *x, int64_t n);
/* Label of query block b: its token, or "first..last" for a pooled block. The
 * text is the trace's, cut to 24 bytes on a UTF-8 boundary. */
void show_block_label(const show_input *in, int64_t b, char *out, size_t size);
/* The same for key block b (the key tokens of a cross-attention trace). */
void show_key_label(const show_input *in, int64_t b, char *out, size_t size);
/* Growing text buffer, zero-initialised; failed becomes 1 after a failed
 * allocation (later additions are then ignored). */
typedef struct show_buf {
  char *s;
  size_t n, cap;
  int failed;
} show_buf;
void show_buf_add(show_buf *b, const char *s, size_t n);
void show_buf_str(show_buf *b, const char *s);
void show_buf_printf(show_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* s as a JSON string literal (quotes included): invalid UTF-8 becomes
 * U+FFFD, '<', '>' and '&' are \u-escaped (safe inside <script>). */
void show_buf_json(show_buf *b, const char *s);
/* s escaped for XML text and attributes (&, <, >, ", '), invalid UTF-8
 * and control characters as U+FFFD. */
void show_buf_xml(show_buf *b, const char *s);
/* Writes the buffer to path; 0, or -1 with a reason. */
int show_buf_save(const show_buf *b, const char *path, char *err,
                  size_t err_size);

/* --- the renderers: 0, or -1 with a one-line reason in err ------------- */
/* attention.html: every layer and head, opening on in->layer/head. */
int show_html(const show_input *in, const char *path, char *err,
              size_t err_size);
/* One head's heat map with token labels and the colour bar. */
int show_png_head(const show_input *in, int64_t layer, int64_t head,
                  const char *path, char *err, size_t err_size);
/* The size in pixels show_png_head draws. */
void show_png_head_size(const show_input *in, int64_t layer, int64_t head,
                        int *w, int *h);
/* Every head of a layer in a grid (a row per KV head under GQA). */
int show_png_layer(const show_input *in, int64_t layer, const char *path,
                   char *err, size_t err_size);
/* One head's heat map as SVG with text labels. */
int show_svg_head(const show_input *in, int64_t layer, int64_t head,
                  const char *path, char *err, size_t err_size);
/* A ViT's picture: the image (8x8 pixels 0..16, grey) and, for every
 * head of layer, the attention of query in->token (the class token: 0)
 * over the patches laid out as the image, each head scaled to its largest
 * patch weight (the weight on the class token itself in the caption).
 * Needs exact maps (block 1) whose keys are one token and a square grid. */
int show_png_patches(const show_input *in, int64_t layer, const float *pixels,
                     const char *title, const char *path, char *err,
                     size_t err_size);
/* Draws s (ASCII; anything else as '?') in the 5x7 font of the PNG files
 * into an RGB image px (h rows of w pixels) at (x, y), its top-left corner
 * (vertical: turned a quarter anticlockwise, (x, y) its bottom-left);
 * clipped to the image. Returns the width in pixels (6 a glyph). */
int show_text_rgb(unsigned char *px, int w, int h, int x, int y, const char *s,
                  int vertical);
/* The terminal view of in->token's row in in->layer, in->head: a malloc'd
 * NUL-terminated string (NULL when out of memory), with ANSI colours when
 * color is nonzero. */
char *show_term(const show_input *in, int color);

#endif
