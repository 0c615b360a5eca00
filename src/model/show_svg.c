/*
 * show_svg.c - one head's heat map as SVG: a rect per cell on the viridis
 * scale (causal mask in grey), token labels as text (queries on the left,
 * keys above, turned a quarter), a title and the colour bar (a gradient of
 * the scale's 11 stops). Up to SVG_TITLED blocks a side every cell also
 * carries a <title> ("query -> key: 0.123") that viewers show on hover.
 */
#include "show.h"

#include <stdio.h>
#include <stdlib.h>

#define SVG_TITLED 48
#define SVG_FONT 11 /* px */

static void hex(const unsigned char c[3], char out[8]) {
  snprintf(out, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

static void svg_labels(show_buf *b, const show_input *in, double x, double y,
                       double cell) {
  const int64_t step = cell >= SVG_FONT ? 1 : (int64_t)(SVG_FONT / cell) + 1;
  show_buf_printf(b, "<g font-size=\"%d\" fill=\"#222\">\n", SVG_FONT);
  for (int64_t k = 0; k < in->view->n_blocks; k += step) {
    char lab[64];
    show_block_label(in, k, lab, sizeof lab);
    show_buf_printf(b,
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                    "dominant-baseline=\"middle\">",
                    x - 4, y + (double)k * cell + cell / 2);
    show_buf_xml(b, lab);
    show_buf_str(b, "</text>\n");
  }
  for (int64_t k = 0; k < in->view->n_blocks_k; k += step) {
    char lab[64];
    show_key_label(in, k, lab, sizeof lab);
    show_buf_printf(b,
                    "<text transform=\"translate(%.1f %.1f) "
                    "rotate(-90)\" dominant-baseline=\"middle\">",
                    x + (double)k * cell + cell / 2, y - 4);
    show_buf_xml(b, lab);
    show_buf_str(b, "</text>\n");
  }
  show_buf_str(b, "</g>\n");
}

static void svg_cells(show_buf *b, const show_input *in, const float *m,
                      double x, double y, double cell, float top) {
  const attnmap_view *v = in->view;
  const int64_t nb = v->n_blocks, nbk = v->n_blocks_k;
  show_buf_str(b, "<g shape-rendering=\"crispEdges\">\n");
  for (int64_t a = 0; a < nb; a++)
    for (int64_t k = 0; k < nbk; k++) {
      const int masked = attnmap_view_hidden(v, a, k);
      unsigned char c[3] = {221, 221, 221};
      if (!masked)
        show_color(m[a * nbk + k] / top, c);
      char col[8];
      hex(c, col);
      show_buf_printf(b,
                      "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                      "height=\"%.2f\" fill=\"%s\"",
                      x + (double)k * cell, y + (double)a * cell, cell, cell,
                      col);
      if (nb > SVG_TITLED || nbk > SVG_TITLED) {
        show_buf_str(b, "/>\n");
        continue;
      }
      char qa[64], ka[64];
      show_block_label(in, a, qa, sizeof qa);
      show_key_label(in, k, ka, sizeof ka);
      show_buf_str(b, "><title>");
      show_buf_xml(b, qa);
      show_buf_str(b, " -&gt; ");
      show_buf_xml(b, ka);
      if (masked)
        show_buf_str(b, ": masked</title></rect>\n");
      else
        show_buf_printf(b, ": %.4f</title></rect>\n", (double)m[a * nbk + k]);
    }
  show_buf_str(b, "</g>\n");
}

static void svg_bar(show_buf *b, double x, double y, double h, float top) {
  show_buf_str(b, "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" "
                  "x2=\"0\" y2=\"0\">\n");
  for (int s = 0; s <= 10; s++) {
    unsigned char c[3];
    char col[8];
    show_color(s / 10.0, c);
    hex(c, col);
    show_buf_printf(b, "<stop offset=\"%.1f\" stop-color=\"%s\"/>\n", s / 10.0,
                    col);
  }
  show_buf_str(b, "</linearGradient></defs>\n");
  show_buf_printf(b,
                  "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.1f\" "
                  "fill=\"url(#scale)\"/>\n",
                  x, y, h);
  show_buf_printf(b,
                  "<g font-size=\"%d\" fill=\"#222\"><text x=\"%.1f\" "
                  "y=\"%.1f\" dominant-baseline=\"hanging\">%.3g</text>"
                  "<text x=\"%.1f\" y=\"%.1f\">0</text></g>\n",
                  SVG_FONT, x + 18, y, (double)top, x + 18, y + h);
}

/* The longest query (keys 0) or key (keys 1) label in code points. */
static size_t longest(const show_input *in, int keys) {
  size_t lw = 0;
  const int64_t n = keys ? in->view->n_blocks_k : in->view->n_blocks;
  for (int64_t k = 0; k < n; k++) {
    char lab[64];
    if (keys)
      show_key_label(in, k, lab, sizeof lab);
    else
      show_block_label(in, k, lab, sizeof lab);
    size_t c = 0;
    for (const char *s = lab; *s; s++)
      c += ((unsigned char)*s & 0xC0) != 0x80;
    if (c > lw)
      lw = c;
  }
  return lw;
}

int show_svg_head(const show_input *in, int64_t layer, int64_t head,
                  const char *path, char *err, size_t err_size) {
  const attnmap_view *v = in->view;
  const int64_t nb = v->n_blocks, nbk = v->n_blocks_k;
  double cell = 560.0 / (double)(nb > nbk ? nb : nbk);
  cell = cell < 3 ? 3 : cell > 28 ? 28 : cell;
  /* the longest query and key labels, in code points: width estimates */
  const double lab_q = 8 + 0.62 * SVG_FONT * (double)longest(in, 0);
  const double lab_k = 8 + 0.62 * SVG_FONT * (double)longest(in, 1);
  const double x = 8 + lab_q, y = 8 + 20 + lab_k;
  const double map_w = cell * (double)nbk, map_h = cell * (double)nb;
  const double w = x + map_w + 90, h = y + map_h + 12;
  const float *m = attnmap_view_map(v, layer, head);
  const float top = show_max(m, nb * nbk);
  show_buf b = {0};
  show_buf_printf(&b,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
                  "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                  "font-family=\"sans-serif\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n"
                  "<text x=\"8\" y=\"20\" font-size=\"14\" fill=\"#222\">",
                  w, h, w, h);
  show_buf_xml(&b, in->trace->model);
  show_buf_printf(&b, " layer %lld head %lld", (long long)layer,
                  (long long)head);
  if (v->heads_kv != v->heads_q)
    show_buf_printf(&b, " (kv head %lld)",
                    (long long)(head / (v->heads_q / v->heads_kv)));
  if (v->block > 1)
    show_buf_printf(&b, ", blocks of %lld tokens", (long long)v->block);
  show_buf_str(&b, "</text>\n");
  svg_labels(&b, in, x, y, cell);
  svg_cells(&b, in, m, x, y, cell, top);
  svg_bar(&b, x + map_w + 16, y, map_h, top);
  show_buf_str(&b, "</svg>\n");
  int rc = show_buf_save(&b, path, err, err_size);
  free(b.s);
  return rc;
}
