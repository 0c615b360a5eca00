/*
 * replay.c - runs a fuzz target's LLVMFuzzerTestOneInput without libFuzzer:
 * over every file of the given directories (or the given files), and
 * optionally over N deterministic mutations of them (a poor man's fuzzer for
 * CI). Link it with one target, e.g. replay.c + npy_fuzz.c + the library.
 *
 *   replay [--mutate N] [--seed S] DIR|FILE...
 *
 * Exits 0 when every input ran (a failing target aborts), 1 when no input
 * was found or a file could not be read, 2 on usage errors. When a target
 * aborts, the input it was given is written to ./replay-crash-input first
 * (so that a mutation's finding can be replayed and kept as a seed).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
  unsigned char *data;
  size_t size;
} input;

static input *g_inputs;
/* The input being run, for the abort handler. */
static const unsigned char *volatile g_cur;
static volatile size_t g_cur_len;

static void on_abort(int sig) {
  const int fd = open("replay-crash-input", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    const unsigned char *p = g_cur;
    size_t n = g_cur_len;
    while (p && n > 0) {
      const ssize_t w = write(fd, p, n);
      if (w <= 0)
        break;
      p += w;
      n -= (size_t)w;
    }
    close(fd);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void run_one(const unsigned char *data, size_t size) {
  g_cur = data;
  g_cur_len = size;
  LLVMFuzzerTestOneInput(data, size);
}
static size_t g_count, g_cap;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) {
      fclose(f);
      fprintf(stderr, "replay: out of memory\n");
      return -1;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0)
      break;
    if (len == cap) {
      unsigned char *nb = realloc(buf, cap * 2);
      if (nb == NULL)
        free(buf);
      buf = nb;
      cap *= 2;
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    fprintf(stderr, "replay: %s: read error\n", path);
    return -1;
  }
  if (g_count == g_cap) {
    size_t ncap = g_cap ? g_cap * 2 : 64;
    input *ni = realloc(g_inputs, ncap * sizeof *ni);
    if (ni == NULL) {
      free(buf);
      fprintf(stderr, "replay: out of memory\n");
      return -1;
    }
    g_inputs = ni;
    g_cap = ncap;
  }
  g_inputs[g_count].data = buf;
  g_inputs[g_count].size = len;
  g_count++;
  return 0;
}

static int add_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode))
    return add_file(path);
  DIR *d = opendir(path);
  if (d == NULL) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    char *full = malloc(len);
    if (full == NULL) {
      rc = -1;
      break;
    }
    snprintf(full, len, "%s/%s", path, e->d_name);
    if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
      free(full);
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof *nn);
      if (nn == NULL) {
        free(full);
        rc = -1;
        break;
      }
      names = nn;
    }
    names[n++] = full;
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    if (rc == 0 && add_file(names[i]) != 0)
      rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* One to four random edits of src into a new buffer. */
static unsigned char *mutate(const input *src, uint64_t *s, size_t *out_len) {
  size_t cap = src->size + 64;
  unsigned char *b = malloc(cap);
  if (b == NULL)
    return NULL;
  if (src->size)
    memcpy(b, src->data, src->size);
  size_t len = src->size;
  static const unsigned char interesting[] = {0x00, 0x01, 0x02, 0x03, 0x04,
                                              0x7f, 0x80, 0xff, '(',  ')',
                                              ',',  '\'', '{',  '}',  '9'};
  int edits = 1 + (int)(rng_next(s) % 4);
  for (int e = 0; e < edits; e++) {
    uint64_t r = rng_next(s);
    switch (r % 5) {
    case 0: /* flip a bit */
      if (len)
        b[rng_next(s) % len] ^= (unsigned char)(1u << (r >> 8) % 8);
      break;
    case 1: /* interesting byte */
      if (len)
        b[rng_next(s) % len] = interesting[(r >> 8) % sizeof interesting];
      break;
    case 2: /* truncate */
      if (len)
        len = (size_t)(rng_next(s) % len);
      break;
    case 3: /* append a few bytes */
      for (int i = 0; i < 1 + (int)((r >> 8) % 8) && len < cap; i++)
        b[len++] = (unsigned char)rng_next(s);
      break;
    default: /* insert a digit */
      if (len && len < cap) {
        size_t at = (size_t)(rng_next(s) % len);
        memmove(b + at + 1, b + at, len - at);
        b[at] = (unsigned char)('0' + (r >> 8) % 10);
        len++;
      }
      break;
    }
  }
  /* an exact-size copy, so that AddressSanitizer sees any overread */
  unsigned char *exact = malloc(len ? len : 1);
  if (exact != NULL && len)
    memcpy(exact, b, len);
  free(b);
  *out_len = len;
  return exact;
}

int main(int argc, char **argv) {
  long long mutations = 0;
  uint64_t seed = 1;
  int rc = 0, npaths = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--mutate") == 0 && i + 1 < argc) {
      mutations = strtoll(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = (uint64_t)strtoull(argv[++i], NULL, 10);
    } else if (strncmp(argv[i], "--", 2) == 0) {
      fprintf(stderr, "usage: %s [--mutate N] [--seed S] DIR|FILE...\n",
              argv[0]);
      return 2;
    } else {
      npaths++;
      if (add_path(argv[i]) != 0)
        rc = 1;
    }
  }
  if (npaths == 0) {
    fprintf(stderr, "usage: %s [--mutate N] [--seed S] DIR|FILE...\n", argv[0]);
    return 2;
  }
  if (g_count == 0) {
    fprintf(stderr, "replay: no inputs found\n");
    rc = 1;
  }
  signal(SIGABRT, on_abort);
  for (size_t i = 0; i < g_count; i++)
    run_one(g_inputs[i].data, g_inputs[i].size);
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 0x1234567;
  for (long long m = 0; g_count > 0 && m < mutations; m++) {
    size_t len = 0;
    unsigned char *b = mutate(&g_inputs[rng_next(&s) % g_count], &s, &len);
    if (b == NULL) {
      fprintf(stderr, "replay: out of memory\n");
      rc = 1;
      break;
    }
    run_one(b, len);
    free(b);
  }
  printf("replay: %zu inputs, %lld mutations: %s\n", g_count,
         mutations > 0 ? mutations : 0, rc == 0 ? "ok" : "FAILED");
  for (size_t i = 0; i < g_count; i++)
    free(g_inputs[i].data);
  free(g_inputs);
  return rc;
}
