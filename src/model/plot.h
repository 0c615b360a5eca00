/*
 * plot.h - the line charts of bench/'s figures (`attn plot`): panels of
 * series against a base-2 logarithmic x axis and a linear y axis, with a
 * right-hand axis in percent of the panel's peak when it has one.
 *
 * Input, one record a line (fields separated by commas; names are
 * printable ASCII without commas, 1-63 bytes; blank lines and lines
 * starting with # are skipped):
 *
 *   x,LABEL                       the x axis' label (default "seq")
 *   panel,NAME,YLABEL,PEAK[,XLABEL]  a panel; PEAK 0 = no percent axis;
 *                                 XLABEL replaces x's label for it
 *   hline,PANEL,LABEL,Y           a dashed level (another peak), labelled
 *   point,PANEL,SERIES,X,Y        X > 0 and Y >= 0, finite
 *
 * Panels are drawn in the order declared (two a row), series get colours
 * in the order they first appear. At most PLOT_MAX_PANELS panels,
 * PLOT_MAX_SERIES series and PLOT_MAX_POINTS points. Parsing treats its
 * input as hostile: anything else is an error with its line number.
 */
#ifndef ATTN_MODEL_PLOT_H
#define ATTN_MODEL_PLOT_H

#include <stddef.h>

#define PLOT_MAX_PANELS 8
#define PLOT_MAX_SERIES 8
#define PLOT_MAX_POINTS 4096
#define PLOT_NAME 64
#define PLOT_MAX_HLINES 4 /* a panel's levels besides its peak */

typedef struct plot_panel {
  char name[PLOT_NAME], ylabel[PLOT_NAME], xlabel[PLOT_NAME];
  double peak;
  char hlabel[PLOT_MAX_HLINES][PLOT_NAME];
  double hy[PLOT_MAX_HLINES];
  int nh;
} plot_panel;

typedef struct plot_point {
  int panel, series;
  double x, y;
} plot_point;

typedef struct plot_data {
  char xlabel[PLOT_NAME];
  plot_panel panels[PLOT_MAX_PANELS];
  int npanels;
  char series[PLOT_MAX_SERIES][PLOT_NAME];
  int nseries;
  plot_point *points; /* malloc'd by plot_parse; plot_free */
  int npoints;
} plot_data;

/* 0, or -1 with a one-line reason in err (d is then empty). */
int plot_parse(const char *text, size_t n, plot_data *d, char *err,
               size_t err_size);
void plot_free(plot_data *d);
/* Draws d into a PNG at path; 0, or -1 with a reason in err. */
int plot_png(const plot_data *d, const char *title, const char *path, char *err,
             size_t err_size);

#endif
