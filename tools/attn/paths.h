/*
 * paths.h - the same file named twice. Two outputs that are one file, or an
 * output that is also an input, are a usage error (exit 2): the second
 * write would destroy the first, or the output would overwrite an input
 * still being read. Files are compared by identity, not by spelling: an
 * existing file by (st_dev, st_ino), so links and "./x" match; a file not
 * yet created by its resolved directory (realpath) and name, after
 * following dangling symbolic links. Special files (/dev/null, pipes,
 * terminals) are exempt: writing one twice destroys nothing.
 */
#ifndef ATTN_CLI_PATHS_H
#define ATTN_CLI_PATHS_H

/* One file named on the command line. */
typedef struct cli_path {
  const char *flag; /* "--out"                   */
  const char *path; /* as given; NULL = absent   */
  int output;       /* 1: written, 0: read       */
} cli_path;

/* Fails (usage) when two outputs, or an output and an input, among the n
 * entries of list are the same file. Inputs may repeat (--k X --v X). */
void paths_check_distinct(const cli_path *list, int n);

#endif /* ATTN_CLI_PATHS_H */
