/*
 * cmd_plot.c - `attn plot --csv FILE --out FILE.png [--title T]`: draws
 * bench/'s line charts (plot.h gives the input format; bench/sweep.py
 * writes it).
 */
#include "args.h"
#include "cli.h"

#include "plot.h"
#include "read_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

const char cmd_plot_help[] =
    "attn plot --csv FILE --out FILE.png [--title TEXT]   draw a line chart\n"
    "  records, one a line: x,LABEL | panel,NAME,YLABEL,PEAK |\n"
    "  point,PANEL,SERIES,X,Y (X > 0 on a log2 axis; PEAK > 0 adds a percent\n"
    "  axis); written by bench/sweep.py\n";

#define PLOT_MAX_FILE ((size_t)16 << 20)

int cmd_plot(int argc, char **argv) {
  const char *csv = NULL, *out = NULL, *title = "libattn";
  args a = args_start(argc, argv);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      cli_print_help();
      exit(0);
    } else if (args_is(&a, "--csv")) {
      args_set_once(&csv, args_value(&a), "--csv");
    } else if (args_is(&a, "--out")) {
      args_set_once(&out, args_value(&a), "--out");
    } else if (args_is(&a, "--title")) {
      title = args_value(&a);
    } else {
      args_unknown(&a, "plot");
    }
  }
  if (!csv || !out)
    cli_fail(CLI_EXIT_USAGE, "plot: --csv and --out are required");
  cli_parsed();
  const int fd = open(csv, O_RDONLY);
  struct stat st;
  if (fd < 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s: cannot open", csv);
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      (size_t)st.st_size > PLOT_MAX_FILE) {
    close(fd);
    cli_fail(CLI_EXIT_RUNTIME, "%s: not a regular file of at most 16 MiB", csv);
  }
  unsigned char *text;
  char err[256];
  const int rc = io_read_file(fd, (size_t)st.st_size, &text, err, sizeof err);
  close(fd);
  if (rc != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s: %s", csv, err);
  cli_defer(free, text);
  plot_data d;
  if (plot_parse((const char *)text, (size_t)st.st_size, &d, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s: %s", csv, err);
  const int bad = plot_png(&d, title, out, err, sizeof err);
  const int npoints = d.npoints;
  plot_free(&d);
  if (bad)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  printf("plot: %s (%d panels, %d series, %d points)\n", out, d.npanels,
         d.nseries, npoints);
  return 0;
}
