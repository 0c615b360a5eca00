/*
 * train_pictures.c - the pictures `attn train` writes (train_pictures.h):
 * the loss curve with its axes labelled, and one example's attention
 * (`attn show --model encdec|vit` draws the whole models, see cmd_show.c).
 * Pixels are drawn here; text in the 5x7 font of `attn show`'s PNGs
 * (show_text_rgb); files encoded by the distribution's stb_image_write.
 */
#include "train_pictures.h"

#include "cli.h"
#include "show.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

typedef struct canvas {
  int w, h;
  unsigned char *px; /* [h, w, 3] */
} canvas;

static canvas canvas_new(int w, int h) {
  canvas c = {w, h, cli_calloc((int64_t)w * h, 3, "an image")};
  memset(c.px, 255, (size_t)w * h * 3);
  return c;
}

static void fill(canvas *c, int x0, int y0, int x1, int y1,
                 const unsigned char rgb[3]) {
  for (int y = y0 < 0 ? 0 : y0; y < y1 && y < c->h; y++)
    for (int x = x0 < 0 ? 0 : x0; x < x1 && x < c->w; x++)
      memcpy(c->px + ((size_t)y * c->w + x) * 3, rgb, 3);
}

static void line(canvas *c, double x0, double y0, double x1, double y1,
                 const unsigned char rgb[3]) {
  const double dx = x1 - x0, dy = y1 - y0;
  const int n = (int)(fabs(dx) > fabs(dy) ? fabs(dx) : fabs(dy)) + 1;
  for (int i = 0; i <= n; i++) {
    const int x = (int)lround(x0 + dx * i / n),
              y = (int)lround(y0 + dy * i / n);
    fill(c, x, y, x + 2, y + 2, rgb);
  }
}

static void save_png(const canvas *c, const char *path) {
  if (!stbi_write_png(path, c->w, c->h, 3, c->px, c->w * 3))
    cli_fail(CLI_EXIT_RUNTIME, "%s: cannot write the PNG", path);
}

/* white (0) to dark blue (1) */
static void heat(double t, unsigned char rgb[3]) {
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  rgb[0] = (unsigned char)(255 - 247 * t);
  rgb[1] = (unsigned char)(255 - 207 * t);
  rgb[2] = (unsigned char)(255 - 148 * t);
}

/* The loss per step (light) and its running mean over 1% of the steps
 * (dark), log10 scale with a grid line at every power of ten. */
void train_loss_png(const double *loss, int64_t n, const char *model,
                    const char *path) {
  const int W = 800, H = 420, L = 56, R = 20, T = 34, B = 40;
  canvas c = canvas_new(W, H);
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (loss[i] > 0 && isfinite(loss[i])) {
      lo = loss[i] < lo ? loss[i] : lo;
      hi = loss[i] > hi ? loss[i] : hi;
    }
  if (!(lo < INFINITY)) {
    lo = 0.1;
    hi = 1;
  }
  const double a = floor(log10(lo)),
               z = ceil(log10(hi)) > a ? ceil(log10(hi)) : a + 1;
  const unsigned char grid[3] = {220, 220, 220}, axis[3] = {60, 60, 60};
  const unsigned char raw[3] = {170, 200, 235}, avg[3] = {20, 70, 160};
  for (double e = a; e <= z; e += 1) {
    const int y = (int)(T + (z - e) / (z - a) * (H - T - B));
    fill(&c, L, y, W - R, y + 1, grid);
    for (int k = 2; k < 10 && e < z; k++) { /* minor ticks */
      const int yk = (int)(T + (z - e - log10(k)) / (z - a) * (H - T - B));
      fill(&c, L - 4, yk, L, yk + 1, axis);
    }
    fill(&c, L - 8, y, L, y + 1, axis);
    char lab[32]; /* the power of ten, right-aligned left of its tick */
    snprintf(lab, sizeof lab, "%g", pow(10.0, e));
    show_text_rgb(c.px, c.w, c.h, L - 11 - 6 * (int)strlen(lab), y - 3, lab, 0);
  }
  fill(&c, L, T, L + 1, H - B, axis);
  fill(&c, L, H - B, W - R, H - B + 1, axis);
  const int64_t win = n / 100 > 1 ? n / 100 : 1;
  double prev_x = 0, prev_y = 0, prev_ax = 0, prev_ay = 0, sum = 0;
  for (int64_t i = 0; i < n; i++) {
    sum += loss[i];
    if (i >= win)
      sum -= loss[i - win];
    const double mean = sum / (double)(i < win ? i + 1 : win);
    const double x =
        L + (n > 1 ? (double)i / (double)(n - 1) : 0) * (W - L - R);
    const double y =
        T + (z - log10(loss[i] > 0 ? loss[i] : lo)) / (z - a) * (H - T - B);
    const double ay =
        T + (z - log10(mean > 0 ? mean : lo)) / (z - a) * (H - T - B);
    if (i) {
      line(&c, prev_x, prev_y, x, y, raw);
      line(&c, prev_ax, prev_ay, x, ay, avg);
    }
    prev_x = prev_ax = x;
    prev_y = y;
    prev_ay = ay;
  }
  /* step ticks at every tenth of the run, numbered */
  for (int k = 0; k <= 10; k++) {
    const int x = L + k * (W - L - R) / 10;
    fill(&c, x, H - B, x + 1, H - B + 6, axis);
    char lab[32];
    snprintf(lab, sizeof lab, "%lld",
             (long long)llround((double)(n > 1 ? n - 1 : 0) * k / 10.0) + 1);
    show_text_rgb(c.px, c.w, c.h, x - 3 * (int)strlen(lab), H - B + 9, lab, 0);
  }
  show_text_rgb(c.px, c.w, c.h, (W - 4 * 6) / 2, H - 12, "step", 0);
  show_text_rgb(c.px, c.w, c.h, 10, T + (H - T - B) / 2 + 12, "loss", 1);
  char title[160];
  snprintf(title, sizeof title,
           "attn train %s: training loss per step (light) and its running "
           "mean over %lld steps (dark), log scale",
           model, (long long)(n / 100 > 1 ? n / 100 : 1));
  show_text_rgb(c.px, c.w, c.h, L, 12, title, 0);
  save_png(&c, path);
}

/* One probe's heads side by side: cell (i, j) is p[h][i][j]. */
static void draw_probe(canvas *c, const train_attn_probe *p, int x0, int y0,
                       int cell) {
  for (int64_t h = 0; h < p->heads; h++)
    for (int64_t i = 0; i < p->seq_q; i++)
      for (int64_t jj = 0; jj < p->seq_k; jj++) {
        double s = 0;
        for (int64_t d = 0; d < p->head_dim; d++)
          s += (double)p->q[(i * p->heads + h) * p->head_dim + d] *
               p->k[(jj * p->heads + h) * p->head_dim + d];
        const double pr = (p->causal && jj > i)
                              ? 0
                              : exp(p->scale * s - p->lse[h * p->seq_q + i]);
        unsigned char rgb[3];
        heat(pr, rgb);
        const int x = x0 + (int)(h * (p->seq_k * cell + cell)) + (int)jj * cell;
        const int y = y0 + (int)i * cell;
        fill(c, x, y, x + cell - 1, y + cell - 1, rgb);
      }
}

void train_encdec_png(encdec *ed, const char *path) {
  char err[512];
  const int64_t T = TASK_NUM_TGT_MAX;
  train_rng r = {4242};
  int32_t src[TASK_NUM_SRC_MAX], len, tin[TASK_NUM_TGT_MAX],
      tout[TASK_NUM_TGT_MAX], out[TASK_NUM_TGT_MAX * 1];
  task_numbers_batch(&r, 1, 1, src, &len, tin, tout, NULL);
  if (encdec_greedy(ed, 1, src, &len, out, NULL, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
  int64_t tl = 1;
  int32_t dec_in[TASK_NUM_TGT_MAX];
  dec_in[0] = TASK_NUM_BOS;
  for (int64_t t = 0; t + 1 < T && out[t] != TASK_NUM_EOS; t++)
    dec_in[tl++] = out[t];
  train_attn_probe *p;
  int np;
  if (encdec_probe(ed, src, len, dec_in, tl, &p, &np, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
  const int cell = 24, left = 9 * 6 + 10; /* room for "thousand" */
  int64_t rows = 0, width = 0;
  for (int k = 0; k < np; k++)
    if (strstr(p[k].name, "cross")) {
      rows++;
      width = p[k].heads * (p[k].seq_k + 1) * cell;
    }
  canvas c =
      canvas_new(left + (int)width, (int)(rows * (tl + 1) * cell) + 2 * cell);
  int64_t row = 0;
  for (int k = 0; k < np; k++) {
    if (!strstr(p[k].name, "cross"))
      continue;
    const int y0 = 2 * cell + (int)(row++ * (tl + 1) * cell);
    draw_probe(&c, &p[k], left, y0, cell);
    /* rows: the word each row writes; columns: the digits, per head */
    show_text_rgb(c.px, c.w, c.h, 4, y0 - 10, p[k].name, 0);
    for (int64_t i = 0; i < tl; i++) {
      const char *w =
          task_numbers_token(i + 1 < tl ? dec_in[i + 1] : TASK_NUM_EOS);
      show_text_rgb(c.px, c.w, c.h, left - 4 - 6 * (int)strlen(w),
                    y0 + (int)i * cell + cell / 2 - 4, w, 0);
    }
    for (int64_t h = 0; h < p[k].heads; h++)
      for (int64_t jj = 0; jj < p[k].seq_k; jj++) {
        const char d[2] = {(char)('0' + src[jj] - 1), 0};
        const int x = left + (int)(h * (p[k].seq_k + 1) * cell + jj * cell);
        show_text_rgb(c.px, c.w, c.h, x + cell / 2 - 3, y0 - 10, d, 0);
      }
  }
  show_text_rgb(c.px, c.w, c.h, 4, 6,
                "cross-attention, one held-out number: rows the words "
                "written, columns the digits, heads side by side",
                0);
  save_png(&c, path);
  for (int k = 0; k < np; k++)
    train_attn_probe_free(&p[k]);
  free(p);
}

void train_vit_png(vit *vt, const task_digits *digits, int64_t example,
                   const char *path) {
  char err[512];
  float img[64];
  int32_t label;
  task_digits_batch(digits, &example, 1, NULL, img, &label);
  train_attn_probe *p;
  int np;
  if (vit_probe(vt, img, &p, &np, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
  const int cell = 12, side = 8 * cell, gap = 12;
  const int64_t H = p[0].heads,
                G = (int64_t)lround(sqrt((double)(p[0].seq_k - 1)));
  canvas c = canvas_new((int)(gap + (H + 1) * (side + gap)),
                        (int)(gap + np * (side + gap)));
  for (int l = 0; l < np; l++) {
    const int y0 = gap + l * (side + gap);
    for (int r = 0; r < 8; r++) /* the image, in grey */
      for (int q = 0; q < 8; q++) {
        const unsigned char v = (unsigned char)(255 - 255 * img[r * 8 + q]);
        const unsigned char g[3] = {v, v, v};
        fill(&c, gap + q * cell, y0 + r * cell, gap + (q + 1) * cell,
             y0 + (r + 1) * cell, g);
      }
    const train_attn_probe *pr = &p[l];
    for (int64_t h = 0; h < H; h++) {
      double mx = 1e-30;
      double *w = cli_calloc(pr->seq_k, sizeof *w, "a row");
      for (int64_t k = 1; k < pr->seq_k; k++) {
        double s = 0;
        for (int64_t d = 0; d < pr->head_dim; d++)
          s += (double)pr->q[h * pr->head_dim + d] *
               pr->k[(k * H + h) * pr->head_dim + d];
        w[k] = exp(pr->scale * s - pr->lse[h * pr->seq_q]);
        mx = w[k] > mx ? w[k] : mx;
      }
      const int x0 = (int)(gap + (h + 1) * (side + gap));
      const int pc = side / (int)G;
      for (int64_t k = 1; k < pr->seq_k; k++) {
        unsigned char rgb[3];
        heat(w[k] / mx, rgb);
        const int gr = (int)((k - 1) / G), gc = (int)((k - 1) % G);
        fill(&c, x0 + gc * pc, y0 + gr * pc, x0 + (gc + 1) * pc,
             y0 + (gr + 1) * pc, rgb);
      }
    }
  }
  save_png(&c, path);
  for (int k = 0; k < np; k++)
    train_attn_probe_free(&p[k]);
  free(p);
}
