/*
 * paths.c - see paths.h.
 */
#include "paths.h"

#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What identifies a file. */
typedef struct file_id {
  int exists;  /* stat succeeded: dev and ino are valid            */
  int special; /* exists and is neither a regular file nor a dir   */
  dev_t dev;
  ino_t ino;
  char name[PATH_MAX]; /* not existing: resolved dir + '/' + name */
} file_id;

/* out = "a/b" ("a" empty: "/b"); 0 if it does not fit. */
static int join(char *out, size_t size, const char *a, const char *b) {
  int n = snprintf(out, size, "%s/%s", a, b);
  return n >= 0 && (size_t)n < size;
}

/* The directory part of path ("." if none, "/" for "/x") into out. */
static void dir_of(const char *path, char *out, size_t size) {
  const char *slash = strrchr(path, '/');
  const char *src = slash != NULL ? path : ".";
  size_t n = slash == NULL || slash == path ? 1 : (size_t)(slash - path);
  if (n >= size)
    n = size - 1;
  memcpy(out, src, n);
  out[n] = '\0';
}

/* Follows a chain of symbolic links from path (dangling ones included) as
 * far as it goes, into out (PATH_MAX bytes); 0 if a name is too long. */
static int follow_links(const char *path, char *out) {
  size_t len = strlen(path);
  if (len >= PATH_MAX)
    return 0;
  memcpy(out, path, len + 1);
  for (int hop = 0; hop < 40; hop++) {
    struct stat st;
    char target[PATH_MAX], dir[PATH_MAX], next[PATH_MAX];
    if (lstat(out, &st) != 0 || !S_ISLNK(st.st_mode))
      return 1;
    ssize_t n = readlink(out, target, sizeof target - 1);
    if (n <= 0)
      return 1;
    target[n] = '\0';
    dir_of(out, dir, sizeof dir);
    if (target[0] != '/' && !join(next, sizeof next, dir, target))
      return 0;
    memcpy(out, target[0] == '/' ? target : next, PATH_MAX);
  }
  return 1;
}

/* The resolved name of a path that does not exist (yet): the real path of
 * its directory and its last component; the path as given if that
 * directory cannot be resolved. */
static void resolve_missing(const char *path, char *out, size_t size) {
  char p[PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
  if (follow_links(path, p)) {
    const char *slash = strrchr(p, '/');
    dir_of(p, dir, sizeof dir);
    if (realpath(dir, real) != NULL &&
        join(out, size, strcmp(real, "/") == 0 ? "" : real,
             slash ? slash + 1 : p))
      return;
  }
  size_t len = strlen(path);
  len = len < size - 1 ? len : size - 1;
  memcpy(out, path, len);
  out[len] = '\0';
}

static void identify(const char *path, file_id *id) {
  struct stat st;
  memset(id, 0, sizeof *id);
  if (stat(path, &st) == 0) {
    id->exists = 1;
    id->special = !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
    id->dev = st.st_dev;
    id->ino = st.st_ino;
  } else {
    resolve_missing(path, id->name, sizeof id->name);
  }
}

static int same_file(const file_id *a, const file_id *b) {
  if (a->special || b->special || a->exists != b->exists)
    return 0;
  if (a->exists)
    return a->dev == b->dev && a->ino == b->ino;
  return strcmp(a->name, b->name) == 0;
}

void paths_check_distinct(const cli_path *list, int n) {
  file_id *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
  if (ids == NULL)
    cli_fail(CLI_EXIT_RUNTIME, "out of memory");
  for (int i = 0; i < n; i++) {
    if (list[i].path != NULL)
      identify(list[i].path, &ids[i]);
  }
  char msg[1024] = {0};
  for (int j = 0; j < n && !msg[0]; j++) {
    for (int i = 0; i < j && !msg[0]; i++) {
      const cli_path *a = &list[i], *b = &list[j];
      if (a->path == NULL || b->path == NULL || (!a->output && !b->output) ||
          !same_file(&ids[i], &ids[j]))
        continue;
      if (a->output && b->output)
        snprintf(msg, sizeof msg, "%s and %s name the same file '%s'", a->flag,
                 b->flag, b->path);
      else
        snprintf(msg, sizeof msg, "output %s '%s' is the same file as input %s",
                 a->output ? a->flag : b->flag, a->output ? a->path : b->path,
                 a->output ? b->flag : a->flag);
    }
  }
  free(ids);
  if (msg[0])
    cli_fail(CLI_EXIT_USAGE, "%s", msg);
}
