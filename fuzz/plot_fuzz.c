/*
 * plot_fuzz.c - libFuzzer target for `attn plot`'s input (src/model/
 * plot_csv.c, plot.h's records): the input is the CSV text, hostile.
 *
 * It either parses or fails with a message; a parse gives counts within
 * the limits, panel and series indices in range, finite points with x > 0
 * and y >= 0, NUL-terminated printable names, and the same result twice.
 * Drawing is not fuzzed here (it writes files); tests/cli/test_plot.sh
 * draws every record kind.
 */
#include "plot.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void name_check(const char *s, int may_be_empty) {
  size_t n = 0;
  while (n < PLOT_NAME && s[n])
    n++;
  if (n == PLOT_NAME || (n == 0 && !may_be_empty))
    abort();
  for (size_t i = 0; i < n; i++)
    if (s[i] < 32 || s[i] > 126)
      abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  plot_data d, e;
  char err[256] = "";
  if (plot_parse((const char *)data, size, &d, err, sizeof err) != 0) {
    if (!err[0] || d.points)
      abort(); /* a failure says why and leaves nothing allocated */
    return 0;
  }
  if (d.npanels < 1 || d.npanels > PLOT_MAX_PANELS || d.nseries < 0 ||
      d.nseries > PLOT_MAX_SERIES || d.npoints < 0 ||
      d.npoints > PLOT_MAX_POINTS)
    abort();
  name_check(d.xlabel, 0);
  for (int i = 0; i < d.npanels; i++) {
    const plot_panel *p = &d.panels[i];
    name_check(p->name, 0);
    name_check(p->ylabel, 0);
    name_check(p->xlabel, 1);
    if (!isfinite(p->peak) || p->peak < 0 || p->nh < 0 ||
        p->nh > PLOT_MAX_HLINES)
      abort();
  }
  for (int i = 0; i < d.nseries; i++)
    name_check(d.series[i], 0);
  for (int i = 0; i < d.npoints; i++) {
    const plot_point *q = &d.points[i];
    if (q->panel < 0 || q->panel >= d.npanels || q->series < 0 ||
        q->series >= d.nseries || !isfinite(q->x) || !(q->x > 0) ||
        !isfinite(q->y) || q->y < 0)
      abort();
  }
  if (plot_parse((const char *)data, size, &e, err, sizeof err) != 0 ||
      e.npoints != d.npoints ||
      memcmp(e.points, d.points, sizeof(plot_point) * (size_t)d.npoints))
    abort();
  plot_free(&e);
  plot_free(&d);
  return 0;
}
