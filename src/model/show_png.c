/*
 * show_png.c - PNG heat maps of `attn show`: one head (show_png_head) and
 * every head of a layer in a grid (show_png_layer), with token labels, a
 * title and the colour bar. Pixels are drawn here (RGB, white background)
 * and encoded by the distribution's stb_image_write.
 *
 * Labels use the 5x7 bitmap font below (ASCII 32..126, 6 pixels a glyph,
 * 9 a line), keys written bottom to top above the map. A code point
 * outside printable ASCII is drawn as '?'; labels longer than LABEL_MAX
 * glyphs end in '.'. When cells are smaller than a line, every k-th label
 * is drawn so that none overlap.
 */
#include "show.h"

#include "unicode.h"

#include <stb/stb_image_write.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX 14 /* glyphs of a token label   */
#define GW 6         /* glyph advance, pixels      */
#define GH 9         /* line height, pixels        */

/* Columns of each glyph, bit 0 the top row: the classic 5x7 shapes. */
static const unsigned char font5x7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, /*  ! */
    {0x00, 0x07, 0x00, 0x07, 0x00}, {0x14, 0x7F, 0x14, 0x7F, 0x14}, /* "# */
    {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62}, /* $% */
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, /* &' */
    {0x00, 0x1C, 0x22, 0x41, 0x00}, {0x00, 0x41, 0x22, 0x1C, 0x00}, /* () */
    {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08}, /* *+ */
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, /* ,- */
    {0x00, 0x60, 0x60, 0x00, 0x00}, {0x20, 0x10, 0x08, 0x04, 0x02}, /* ./ */
    {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00}, /* 01 */
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, /* 23 */
    {0x18, 0x14, 0x12, 0x7F, 0x10}, {0x27, 0x45, 0x45, 0x45, 0x39}, /* 45 */
    {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03}, /* 67 */
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, /* 89 */
    {0x00, 0x36, 0x36, 0x00, 0x00}, {0x00, 0x56, 0x36, 0x00, 0x00}, /* :; */
    {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14}, /* <= */
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, /* >? */
    {0x32, 0x49, 0x79, 0x41, 0x3E}, {0x7E, 0x11, 0x11, 0x11, 0x7E}, /* @A */
    {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22}, /* BC */
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, /* DE */
    {0x7F, 0x09, 0x09, 0x09, 0x01}, {0x3E, 0x41, 0x49, 0x49, 0x7A}, /* FG */
    {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00}, /* HI */
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, /* JK */
    {0x7F, 0x40, 0x40, 0x40, 0x40}, {0x7F, 0x02, 0x0C, 0x02, 0x7F}, /* LM */
    {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E}, /* NO */
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, /* PQ */
    {0x7F, 0x09, 0x19, 0x29, 0x46}, {0x46, 0x49, 0x49, 0x49, 0x31}, /* RS */
    {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F}, /* TU */
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, /* VW */
    {0x63, 0x14, 0x08, 0x14, 0x63}, {0x07, 0x08, 0x70, 0x08, 0x07}, /* XY */
    {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00}, /* Z[ */
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, /* \] */
    {0x04, 0x02, 0x01, 0x02, 0x04}, {0x40, 0x40, 0x40, 0x40, 0x40}, /* ^_ */
    {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78}, /* `a */
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, /* bc */
    {0x38, 0x44, 0x44, 0x48, 0x7F}, {0x38, 0x54, 0x54, 0x54, 0x18}, /* de */
    {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x0C, 0x52, 0x52, 0x52, 0x3E}, /* fg */
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, /* hi */
    {0x20, 0x40, 0x44, 0x3D, 0x00}, {0x7F, 0x10, 0x28, 0x44, 0x00}, /* jk */
    {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78}, /* lm */
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, /* no */
    {0x7C, 0x14, 0x14, 0x14, 0x08}, {0x08, 0x14, 0x14, 0x18, 0x7C}, /* pq */
    {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20}, /* rs */
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, /* tu */
    {0x1C, 0x20, 0x40, 0x20, 0x1C}, {0x3C, 0x40, 0x30, 0x40, 0x3C}, /* vw */
    {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C}, /* xy */
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, /* z{ */
    {0x00, 0x00, 0x7F, 0x00, 0x00}, {0x00, 0x41, 0x36, 0x08, 0x00}, /* |} */
    {0x08, 0x04, 0x08, 0x10, 0x08}};                                /* ~  */

static const unsigned char INK[3] = {24, 24, 24};
static const unsigned char PAPER[3] = {255, 255, 255};
static const unsigned char HIDDEN[3] = {221, 221, 221}; /* causal mask */

typedef struct canvas {
  int w, h;
  unsigned char *px; /* (h, w, 3) */
} canvas;

static void fill(canvas *c, int x, int y, int w, int h,
                 const unsigned char rgb[3]) {
  for (int r = y < 0 ? 0 : y; r < y + h && r < c->h; r++)
    for (int k = x < 0 ? 0 : x; k < x + w && k < c->w; k++)
      memcpy(c->px + ((size_t)r * (size_t)c->w + (size_t)k) * 3, rgb, 3);
}

/* s as ASCII glyphs: '?' for anything else, at most LABEL_MAX. */
static int ascii_label(const char *s, char *out) {
  size_t n = strlen(s), i = 0;
  int k = 0;
  while (i < n && k < LABEL_MAX + 1) {
    uint32_t cp = 0;
    size_t m = utf8_decode(s + i, n - i, &cp);
    out[k++] = (char)(cp >= 32 && cp < 127 ? cp : '?');
    i += m ? m : 1;
  }
  if (k > LABEL_MAX) {
    k = LABEL_MAX;
    out[k - 1] = '.';
  }
  out[k] = 0;
  return k;
}

/* Draws s at (x, y), its top-left corner; vertical: rotated a quarter turn
 * anticlockwise, (x, y) the bottom-left corner. Returns the length in px. */
static int text(canvas *c, int x, int y, const char *s, int vertical) {
  int k = 0;
  for (; s[k]; k++) {
    unsigned char ch = (unsigned char)s[k];
    const unsigned char *g = font5x7[ch >= 32 && ch < 127 ? ch - 32 : 31];
    for (int cx = 0; cx < 5; cx++)
      for (int ry = 0; ry < 7; ry++)
        if (g[cx] >> ry & 1) {
          if (vertical)
            fill(c, x + ry, y - k * GW - cx - 1, 1, 1, INK);
          else
            fill(c, x + k * GW + cx, y + ry, 1, 1, INK);
        }
  }
  return k * GW;
}

/* One map of nb x nbk cells of size cell at (x, y), scaled by top. */
static void draw_map(canvas *c, const attnmap_view *v, const float *m, int x,
                     int y, int cell, float top) {
  const int64_t nb = v->n_blocks, nbk = v->n_blocks_k;
  for (int64_t a = 0; a < nb; a++)
    for (int64_t b = 0; b < nbk; b++) {
      unsigned char rgb[3];
      if (attnmap_view_hidden(v, a, b))
        memcpy(rgb, HIDDEN, 3);
      else
        show_color(m[a * nbk + b] / top, rgb);
      fill(c, x + (int)b * cell, y + (int)a * cell, cell, cell, rgb);
    }
}

/* Query labels left of (x, y) (right-aligned), key labels above it. */
static void draw_labels(canvas *c, const show_input *in, int x, int y, int cell,
                        int queries, int keys) {
  const int step = (GH + cell - 1) / cell;
  for (int64_t b = 0; queries && b < in->view->n_blocks; b += step) {
    char raw[64], a[LABEL_MAX + 2];
    show_block_label(in, b, raw, sizeof raw);
    int len = ascii_label(raw, a) * GW;
    text(c, x - 4 - len, y + (int)b * cell + cell / 2 - 4, a, 0);
  }
  for (int64_t b = 0; keys && b < in->view->n_blocks_k; b += step) {
    char raw[64], a[LABEL_MAX + 2];
    show_key_label(in, b, raw, sizeof raw);
    ascii_label(raw, a);
    text(c, x + (int)b * cell + cell / 2 - 4, y - 4, a, 1);
  }
}

/* The colour bar: height h at (x, y), labelled top and 0. */
static void draw_bar(canvas *c, int x, int y, int h, float top) {
  for (int r = 0; r < h; r++) {
    unsigned char rgb[3];
    show_color(1.0 - (double)r / (h > 1 ? h - 1 : 1), rgb);
    fill(c, x, y + r, 14, 1, rgb);
  }
  char s[32];
  snprintf(s, sizeof s, "%.3g", (double)top);
  text(c, x + 18, y, s, 0);
  text(c, x + 18, y + h - 7, "0", 0);
}

/* The widest label of the queries (keys: 0) or the keys (keys: 1). */
static int label_width(const show_input *in, int keys) {
  int w = 0;
  const int64_t n = keys ? in->view->n_blocks_k : in->view->n_blocks;
  for (int64_t b = 0; b < n; b++) {
    char raw[64], a[LABEL_MAX + 2];
    if (keys)
      show_key_label(in, b, raw, sizeof raw);
    else
      show_block_label(in, b, raw, sizeof raw);
    int k = ascii_label(raw, a);
    if (k > w)
      w = k;
  }
  return w * GW;
}

/* Cell size for a map of nb x nbk blocks in about `room` pixels. */
static int cell_size(const attnmap_view *v, int room, int lo, int hi) {
  const int64_t m = v->n_blocks > v->n_blocks_k ? v->n_blocks : v->n_blocks_k;
  int cell = (int)(room / m);
  return cell < lo ? lo : cell > hi ? hi : cell;
}

static int save(canvas *c, const char *path, char *err, size_t err_size) {
  int ok = stbi_write_png(path, c->w, c->h, 3, c->px, c->w * 3);
  free(c->px);
  c->px = NULL;
  if (!ok) {
    snprintf(err, err_size, "%s: cannot write the PNG", path);
    return -1;
  }
  return 0;
}

static int alloc(canvas *c, int w, int h, char *err, size_t err_size) {
  c->w = w;
  c->h = h;
  c->px = malloc((size_t)w * (size_t)h * 3);
  if (!c->px) {
    snprintf(err, err_size, "PNG of %dx%d: out of memory", w, h);
    return -1;
  }
  fill(c, 0, 0, w, h, PAPER);
  return 0;
}

static void caption(const show_input *in, int64_t layer, int64_t head, char *s,
                    size_t size) {
  const attnmap_view *v = in->view;
  int n = snprintf(s, size, "%s layer %lld head %lld", in->trace->model,
                   (long long)layer, (long long)head);
  if (head >= 0 && v->heads_kv != v->heads_q && n > 0 && (size_t)n < size)
    n += snprintf(s + n, size - (size_t)n, " (kv head %lld)",
                  (long long)(head / (v->heads_q / v->heads_kv)));
  if (v->block > 1 && n > 0 && (size_t)n < size)
    snprintf(s + n, size - (size_t)n, ", blocks of %lld tokens",
             (long long)v->block);
}

/* Where things go in a head's picture. */
typedef struct head_layout {
  int cell, left, top, map_w, map_h, w, h;
} head_layout;

static head_layout layout_head(const show_input *in, const char *title) {
  head_layout g;
  const attnmap_view *v = in->view;
  g.cell = cell_size(v, 560, 2, 28);
  g.map_w = (int)v->n_blocks_k * g.cell;
  g.map_h = (int)v->n_blocks * g.cell;
  g.left = 8 + label_width(in, 0) + 4;
  g.top = 6 + GH + 6 + label_width(in, 1) + 4;
  g.w = g.left + g.map_w + 16 + 14 + 4 + 10 * GW;
  if (g.w < 8 + (int)strlen(title) * GW + 8)
    g.w = 8 + (int)strlen(title) * GW + 8;
  g.h = g.top + g.map_h + 8;
  return g;
}

void show_png_head_size(const show_input *in, int64_t layer, int64_t head,
                        int *w, int *h) {
  char title[160];
  caption(in, layer, head, title, sizeof title);
  head_layout g = layout_head(in, title);
  *w = g.w;
  *h = g.h;
}

int show_png_head(const show_input *in, int64_t layer, int64_t head,
                  const char *path, char *err, size_t err_size) {
  const attnmap_view *v = in->view;
  const float *m = attnmap_view_map(v, layer, head);
  const float mx = show_max(m, v->n_blocks * v->n_blocks_k);
  char title[160];
  caption(in, layer, head, title, sizeof title);
  head_layout g = layout_head(in, title);
  canvas c;
  if (alloc(&c, g.w, g.h, err, err_size) != 0)
    return -1;
  text(&c, 8, 6, title, 0);
  draw_labels(&c, in, g.left, g.top, g.cell, 1, 1);
  draw_map(&c, v, m, g.left, g.top, g.cell, mx);
  draw_bar(&c, g.left + g.map_w + 16, g.top, g.map_h, mx);
  return save(&c, path, err, err_size);
}

int show_png_layer(const show_input *in, int64_t layer, const char *path,
                   char *err, size_t err_size) {
  const attnmap_view *v = in->view;
  const int hq = (int)v->heads_q;
  const int group = (int)(v->heads_q / v->heads_kv);
  int cols = group > 1 ? group : 1;
  if (group == 1)
    while (cols * cols < hq)
      cols++;
  const int rows = (hq + cols - 1) / cols;
  const int cell = cell_size(v, 200, 1, 16), gap = 12;
  const int map_w = (int)v->n_blocks_k * cell, map_h = (int)v->n_blocks * cell;
  const int left = 8 + label_width(in, 0) + 4;
  const int top = 6 + GH + 6 + label_width(in, 1) + 4;
  const int tile_h = map_h + 2 + GH + gap; /* map, caption line, gap */
  const float mx = show_max(attnmap_view_map(v, layer, 0),
                            v->heads_q * v->n_blocks * v->n_blocks_k);
  char title[160];
  caption(in, layer, -1, title, sizeof title);
  /* the caption says "head -1": cut it to "<model> layer L" + blocks */
  char *hh = strstr(title, " head -1");
  if (hh)
    memmove(hh, hh + 8, strlen(hh + 8) + 1);
  int w = left + cols * (map_w + gap) + 16 + 14 + 4 + 10 * GW;
  if (w < 8 + (int)strlen(title) * GW + 8)
    w = 8 + (int)strlen(title) * GW + 8;
  canvas c;
  if (alloc(&c, w, top + rows * tile_h + 8, err, err_size) != 0)
    return -1;
  text(&c, 8, 6, title, 0);
  for (int h = 0; h < hq; h++) {
    const int r = h / cols, k = h % cols;
    const int x = left + k * (map_w + gap), y = top + r * tile_h;
    char cap[48];
    if (group > 1)
      snprintf(cap, sizeof cap, "h%d kv%d", h, h / group);
    else
      snprintf(cap, sizeof cap, "h%d", h);
    draw_labels(&c, in, x, y, cell, k == 0, r == 0);
    draw_map(&c, v, attnmap_view_map(v, layer, h), x, y, cell, mx);
    text(&c, x, y + map_h + 2, cap, 0);
  }
  draw_bar(&c, left + cols * (map_w + gap) + 4, top, rows * tile_h - gap, mx);
  return save(&c, path, err, err_size);
}

int show_text_rgb(unsigned char *px, int w, int h, int x, int y, const char *s,
                  int vertical) {
  canvas c = {w, h, px};
  return text(&c, x, y, s, vertical);
}

int show_png_patches(const show_input *in, int64_t layer, const float *pixels,
                     const char *title, const char *path, char *err,
                     size_t err_size) {
  const attnmap_view *v = in->view;
  const int64_t n = v->seq_k, q = in->token;
  int64_t grid = 1;
  while ((grid + 1) * (grid + 1) <= n - 1)
    grid++;
  if (v->block != 1 || n < 2 || grid * grid != n - 1 || q < 0 || q >= v->seq) {
    snprintf(err, err_size,
             "patch picture: needs exact maps over a class token and a "
             "square grid of patches (%lld keys)",
             (long long)n);
    return -1;
  }
  const int side = 8 * 14, gap = 14, hq = (int)v->heads_q;
  const int top = 6 + GH + 6 + GH + 4, pc = side / (int)grid;
  canvas c;
  int w = gap + (hq + 1) * (side + gap) + 14 + 4 + 10 * GW;
  if (w < 8 + (int)strlen(title) * GW + 8)
    w = 8 + (int)strlen(title) * GW + 8;
  if (alloc(&c, w, top + side + 4 + GH + 8, err, err_size) != 0)
    return -1;
  text(&c, 8, 6, title, 0);
  for (int r = 0; r < 8; r++) /* the image, dark ink on white as written */
    for (int k = 0; k < 8; k++) {
      float p = pixels[r * 8 + k] / 16.0f;
      p = p < 0 ? 0 : p > 1 ? 1 : p;
      const unsigned char g = (unsigned char)(255 - 255 * p);
      const unsigned char rgb[3] = {g, g, g};
      fill(&c, gap + k * 14, top + r * 14, 14, 14, rgb);
    }
  text(&c, gap, top - GH - 2, "image", 0);
  for (int h = 0; h < hq; h++) { /* query q's row over the patches */
    const float *m = attnmap_view_map(v, layer, h) + q * n;
    const float mx = show_max(m + 1, n - 1);
    const int x0 = gap + (h + 1) * (side + gap);
    for (int64_t j = 1; j < n; j++) {
      unsigned char rgb[3];
      show_color(m[j] / mx, rgb);
      fill(&c, x0 + (int)((j - 1) % grid) * pc,
           top + (int)((j - 1) / grid) * pc, pc, pc, rgb);
    }
    char cap[64];
    snprintf(cap, sizeof cap, "h%d  %s %.2f", h,
             model_trace_key_token(in->trace, 0), (double)m[0]);
    text(&c, x0, top - GH - 2, cap, 0);
  }
  text(&c, gap, top + side + 4, "each head scaled to its largest patch weight",
       0);
  return save(&c, path, err, err_size);
}
