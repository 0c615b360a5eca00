/*
 * plot_png.c - line charts for bench/ (issue 14's figures): panels of
 * series against a base-2 logarithmic x axis (sequence or cache length),
 * a linear y axis, and a right-hand axis in percent of a peak where the
 * panel has one. Input is plot.h's CSV; text is show_png.c's 5x7 font
 * (show_text_rgb); the file is written by stb_image_write.
 */
#include "plot.h"
#include "show.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#define PW 540 /* panel width, height (pixels) */
#define PH 340
#define ML 64 /* plot area margins inside a panel */
#define MR 60
#define MT 28
#define MB 34

static const unsigned char INK[3] = {24, 24, 24}, GRID[3] = {228, 228, 228},
                           PAPER[3] = {255, 255, 255};
/* Okabe and Ito's colour-blind safe palette */
static const unsigned char COLOR[PLOT_MAX_SERIES][3] = {
    {0, 114, 178},  {213, 94, 0},  {0, 158, 115},   {204, 121, 167},
    {86, 180, 233}, {230, 159, 0}, {120, 120, 120}, {0, 0, 0}};

typedef struct img {
  int w, h;
  unsigned char *px;
} img;

static void dot(img *c, int x, int y, const unsigned char *rgb) {
  if (x >= 0 && y >= 0 && x < c->w && y < c->h)
    memcpy(c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3, rgb, 3);
}

static void rect(img *c, int x, int y, int w, int h, const unsigned char *rgb) {
  for (int r = y; r < y + h; r++)
    for (int k = x; k < x + w; k++)
      dot(c, k, r, rgb);
}

/* A segment of width 2 (dash > 0: on and off runs of dash pixels). */
static void line(img *c, int x0, int y0, int x1, int y1,
                 const unsigned char *rgb, int dash) {
  const int dx = abs(x1 - x0), dy = -abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int e = dx + dy, n = 0;
  for (;;) {
    if (!dash || (n++ / dash) % 2 == 0)
      rect(c, x0, y0, 2, 2, rgb);
    if (x0 == x1 && y0 == y1)
      return;
    const int e2 = 2 * e;
    if (e2 >= dy)
      e += dy, x0 += sx;
    if (e2 <= dx)
      e += dx, y0 += sy;
  }
}

static void text(img *c, int x, int y, const char *s) {
  show_text_rgb(c->px, c->w, c->h, x, y, s, 0);
}

/* 1, 2 or 5 times a power of ten, about range / 5. */
static double nice_step(double range) {
  const double raw = range / 5.0, p = pow(10.0, floor(log10(raw)));
  const double m = raw / p;
  return (m <= 1.0 ? 1.0 : m <= 2.0 ? 2.0 : m <= 5.0 ? 5.0 : 10.0) * p;
}

static void fmt_num(double v, char *s, size_t n) {
  if (v >= 1024.0 && fmod(v, 1024.0) == 0.0)
    snprintf(s, n, "%gK", v / 1024.0);
  else
    snprintf(s, n, "%g", v);
}

static void draw_panel(img *c, const plot_data *d, int pi, int ox, int oy) {
  const plot_panel *pn = &d->panels[pi];
  double x0 = INFINITY, x1 = 0.0, ymax = pn->peak;
  for (int h = 0; h < pn->nh; h++)
    ymax = pn->hy[h] > ymax ? pn->hy[h] : ymax;
  for (int i = 0; i < d->npoints; i++) {
    const plot_point *p = &d->points[i];
    if (p->panel != pi)
      continue;
    x0 = p->x < x0 ? p->x : x0;
    x1 = p->x > x1 ? p->x : x1;
    ymax = p->y > ymax ? p->y : ymax;
  }
  text(c, ox + ML, oy + 8, pn->name);
  if (x1 <= 0.0)
    return; /* no point */
  const double lx0 = log2(x0), lx1 = log2(x1) > lx0 ? log2(x1) : lx0 + 1.0;
  const double step = nice_step(ymax > 0 ? ymax * 1.05 : 1.0);
  const double ytop = ceil(ymax * 1.05 / step) * step;
  const int aw = PW - ML - MR, ah = PH - MT - MB, ax = ox + ML, ay = oy + MT;
#define PX(v) (ax + (int)lround((log2(v) - lx0) / (lx1 - lx0) * (aw - 1)))
#define PY(v) (ay + ah - 1 - (int)lround((v) / ytop * (ah - 1)))
  char s[48];
  for (double y = 0.0; y <= ytop * 1.0000001; y += step) {
    rect(c, ax, PY(y), aw, 1, GRID);
    fmt_num(y, s, sizeof s);
    text(c, ax - 6 - 6 * (int)strlen(s), PY(y) - 3, s);
    if (pn->peak > 0) {
      snprintf(s, sizeof s, "%.0f%%", 100.0 * y / pn->peak);
      text(c, ax + aw + 6, PY(y) - 3, s);
    }
  }
  for (double lx = ceil(lx0); lx <= lx1 + 1e-9; lx += 1.0) {
    const int x = PX(exp2(lx));
    rect(c, x, ay, 1, ah, GRID);
    fmt_num(exp2(lx), s, sizeof s);
    text(c, x - 3 * (int)strlen(s), ay + ah + 6, s);
  }
  rect(c, ax, ay + ah, aw, 1, INK);
  rect(c, ax, ay, 1, ah, INK);
  text(c, ox + 4, ay - 12, pn->ylabel);
  if (pn->peak > 0) {
    line(c, ax, PY(pn->peak), ax + aw - 1, PY(pn->peak), INK, 4);
    text(c, ax + aw - 6 * 4 - 4, PY(pn->peak) - 11, "peak");
  }
  for (int h = 0; h < pn->nh; h++) {
    line(c, ax, PY(pn->hy[h]), ax + aw - 1, PY(pn->hy[h]), INK, 2);
    text(c, ax + aw - 6 * (int)strlen(pn->hlabel[h]) - 4, PY(pn->hy[h]) - 11,
         pn->hlabel[h]);
  }
  const char *xl = pn->xlabel[0] ? pn->xlabel : d->xlabel;
  text(c, ax + aw / 2 - 3 * (int)strlen(xl), ay + ah + 20, xl);
  for (int sr = 0; sr < d->nseries; sr++) {
    int px = -1, py = -1;
    for (int i = 0; i < d->npoints; i++) { /* points are sorted by x */
      const plot_point *p = &d->points[i];
      if (p->panel != pi || p->series != sr)
        continue;
      const int x = PX(p->x), y = PY(p->y);
      if (px >= 0)
        line(c, px, py, x, y, COLOR[sr], 0);
      rect(c, x - 2, y - 2, 6, 6, COLOR[sr]);
      px = x, py = y;
    }
  }
#undef PX
#undef PY
}

static int cmp_x(const void *a, const void *b) {
  const plot_point *p = (const plot_point *)a, *q = (const plot_point *)b;
  return p->x < q->x ? -1 : p->x > q->x;
}

int plot_png(const plot_data *d, const char *title, const char *path, char *err,
             size_t err_size) {
  if (d->npanels < 1) {
    snprintf(err, err_size, "plot: no panel to draw");
    return -1;
  }
  plot_data s = *d; /* sorted copy of the points */
  s.points = malloc(sizeof(plot_point) * (size_t)(d->npoints + 1));
  if (!s.points) {
    snprintf(err, err_size, "plot: out of memory");
    return -1;
  }
  memcpy(s.points, d->points, sizeof(plot_point) * (size_t)d->npoints);
  qsort(s.points, (size_t)s.npoints, sizeof(plot_point), cmp_x);
  const int cols = d->npanels > 1 ? 2 : 1;
  const int rows = (d->npanels + cols - 1) / cols;
  const int legend = 18 * ((d->nseries + cols * 2 - 1) / (cols * 2)) + 12;
  const int tw = 24 + 6 * (int)strlen(title); /* the title fits */
  img c = {cols * PW > tw ? cols * PW : tw, 30 + rows * PH + legend, NULL};
  c.px = malloc((size_t)c.w * (size_t)c.h * 3);
  if (!c.px) {
    free(s.points);
    snprintf(err, err_size, "plot: out of memory");
    return -1;
  }
  rect(&c, 0, 0, c.w, c.h, PAPER);
  text(&c, 12, 10, title);
  for (int pi = 0; pi < d->npanels; pi++)
    draw_panel(&c, &s, pi, (pi % cols) * PW, 30 + (pi / cols) * PH);
  for (int sr = 0; sr < d->nseries; sr++) { /* legend, two per column */
    const int x = 20 + (sr % (cols * 2)) * (PW / 2);
    const int y = 30 + rows * PH + 6 + 18 * (sr / (cols * 2));
    rect(&c, x, y + 1, 16, 6, COLOR[sr]);
    text(&c, x + 22, y, d->series[sr]);
  }
  free(s.points);
  const int ok = stbi_write_png(path, c.w, c.h, 3, c.px, c.w * 3);
  free(c.px);
  if (!ok) {
    snprintf(err, err_size, "%s: cannot write the PNG", path);
    return -1;
  }
  return 0;
}
