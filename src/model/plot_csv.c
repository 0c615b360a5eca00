/* plot_csv.c - plot.h's input format, parsed as hostile input. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits line (NUL-terminated, modified) at commas into at most max
 * fields; returns their number, or max + 1 when there are more. */
static int split(char *line, char **f, int max) {
  int n = 0;
  for (char *p = line;;) {
    if (n == max)
      return max + 1;
    f[n++] = p;
    char *c = strchr(p, ',');
    if (!c)
      return n;
    *c = 0;
    p = c + 1;
  }
}

static int name_ok(const char *s) {
  const size_t n = strlen(s);
  if (n == 0 || n >= PLOT_NAME)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < 32 || s[i] > 126)
      return 0;
  return 1;
}

static int number(const char *s, double *v) {
  char *end;
  if (!*s)
    return 0;
  *v = strtod(s, &end);
  return *end == 0 && isfinite(*v);
}

static int parse_line(char *line, plot_data *d, char *why, size_t wn) {
  char *f[6];
  const int n = split(line, f, 5);
  for (int i = 0; i < n && i < 5; i++)
    if (!name_ok(f[i])) {
      snprintf(why, wn, "field %d is empty, too long or not printable ASCII",
               i + 1);
      return -1;
    }
  if (strcmp(f[0], "x") == 0 && n == 2) {
    snprintf(d->xlabel, PLOT_NAME, "%s", f[1]);
    return 0;
  }
  if (strcmp(f[0], "hline") == 0 && n == 4) {
    double y;
    plot_panel *p = NULL;
    for (int i = 0; i < d->npanels; i++)
      if (strcmp(d->panels[i].name, f[1]) == 0)
        p = &d->panels[i];
    if (!p || !number(f[3], &y) || y < 0 || p->nh == PLOT_MAX_HLINES) {
      snprintf(why, wn, "hline: a declared panel, a level >= 0, at most %d",
               PLOT_MAX_HLINES);
      return -1;
    }
    snprintf(p->hlabel[p->nh], PLOT_NAME, "%s", f[2]);
    p->hy[p->nh++] = y;
    return 0;
  }
  if (strcmp(f[0], "panel") == 0 && (n == 4 || n == 5)) {
    double peak;
    if (!number(f[3], &peak) || peak < 0) {
      snprintf(why, wn, "peak is not a finite number >= 0");
      return -1;
    }
    for (int i = 0; i < d->npanels; i++)
      if (strcmp(d->panels[i].name, f[1]) == 0) {
        snprintf(why, wn, "panel declared twice");
        return -1;
      }
    if (d->npanels == PLOT_MAX_PANELS) {
      snprintf(why, wn, "more than %d panels", PLOT_MAX_PANELS);
      return -1;
    }
    plot_panel *p = &d->panels[d->npanels++];
    snprintf(p->name, PLOT_NAME, "%s", f[1]);
    snprintf(p->ylabel, PLOT_NAME, "%s", f[2]);
    snprintf(p->xlabel, PLOT_NAME, "%s", n == 5 ? f[4] : "");
    p->peak = peak;
    return 0;
  }
  if (strcmp(f[0], "point") == 0 && n == 5) {
    plot_point pt;
    pt.panel = pt.series = -1;
    for (int i = 0; i < d->npanels; i++)
      if (strcmp(d->panels[i].name, f[1]) == 0)
        pt.panel = i;
    if (pt.panel < 0) {
      snprintf(why, wn, "point of a panel not declared before it");
      return -1;
    }
    if (!number(f[3], &pt.x) || !number(f[4], &pt.y) || !(pt.x > 0) ||
        pt.y < 0) {
      snprintf(why, wn, "x must be a finite number > 0 and y >= 0");
      return -1;
    }
    for (int i = 0; i < d->nseries; i++)
      if (strcmp(d->series[i], f[2]) == 0)
        pt.series = i;
    if (pt.series < 0) {
      if (d->nseries == PLOT_MAX_SERIES) {
        snprintf(why, wn, "more than %d series", PLOT_MAX_SERIES);
        return -1;
      }
      pt.series = d->nseries++;
      snprintf(d->series[pt.series], PLOT_NAME, "%s", f[2]);
    }
    if (d->npoints == PLOT_MAX_POINTS) {
      snprintf(why, wn, "more than %d points", PLOT_MAX_POINTS);
      return -1;
    }
    d->points[d->npoints++] = pt;
    return 0;
  }
  snprintf(why, wn,
           "expected x,LABEL or panel,NAME,YLABEL,PEAK[,XLABEL] or "
           "hline,PANEL,LABEL,Y or point,PANEL,SERIES,X,Y");
  return -1;
}

int plot_parse(const char *text, size_t n, plot_data *d, char *err,
               size_t err_size) {
  memset(d, 0, sizeof *d);
  snprintf(d->xlabel, PLOT_NAME, "seq");
  d->points = malloc(sizeof(plot_point) * PLOT_MAX_POINTS);
  char *line = malloc(PLOT_NAME * 6 + 2);
  if (!d->points || !line) {
    free(line);
    plot_free(d);
    snprintf(err, err_size, "plot: out of memory");
    return -1;
  }
  size_t i = 0;
  for (long no = 1; i < n; no++) {
    size_t j = i;
    while (j < n && text[j] != '\n')
      j++;
    size_t len = j - i;
    if (len && text[i + len - 1] == '\r')
      len--;
    char why[160];
    if (len > PLOT_NAME * 6) {
      snprintf(err, err_size, "plot: line %ld is too long", no);
      free(line);
      plot_free(d);
      return -1;
    }
    memcpy(line, text + i, len);
    line[len] = 0;
    i = j + 1;
    if (len == 0 || line[0] == '#')
      continue;
    const int nul = memchr(line, 0, len) != NULL;
    if (nul)
      snprintf(why, sizeof why, "a NUL byte");
    if (nul || parse_line(line, d, why, sizeof why)) {
      snprintf(err, err_size, "plot: line %ld: %s", no, why);
      free(line);
      plot_free(d);
      return -1;
    }
  }
  free(line);
  if (d->npanels == 0) {
    snprintf(err, err_size, "plot: no panel declared");
    plot_free(d);
    return -1;
  }
  return 0;
}

void plot_free(plot_data *d) {
  free(d->points);
  d->points = NULL;
  d->npoints = 0;
}
