/*
 * encoder_bench.c - times libattn's BERT encoder (src/model/bert.c) on a
 * file of sentences, one per line: loads the model once, embeds all the
 * sentences (bert_embed: sorted by length, padded batches of 32) once to
 * warm up, then R times, and prints one JSON line with the seconds of
 * each repetition. encoder.py builds and drives it.
 *
 *   encoder_bench MODEL_DIR SENTENCES.txt THREADS REPS
 */
#include "bert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: encoder_bench MODEL_DIR SENTENCES THREADS REPS\n");
    return 2;
  }
  const int threads = atoi(argv[3]), reps = atoi(argv[4]);
  FILE *f = fopen(argv[2], "r");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  char **texts = NULL, line[65536];
  int64_t n = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    texts = realloc(texts, (size_t)(n + 1) * sizeof *texts);
    texts[n++] = strdup(line);
  }
  fclose(f);
  char err[512];
  bert *m;
  if (bert_load(argv[1], &m, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  float *out = malloc((size_t)n * 384 * sizeof *out);
  printf("{\"sentences\": %lld, \"seconds\": [", (long long)n);
  for (int r = -1; r < reps; r++) {
    double t0 = now();
    if (bert_embed(m, (const char *const *)texts, n, threads, out, err,
                   sizeof err) != 0) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    double t = now() - t0;
    if (r >= 0)
      printf(r ? ", %.6f" : "%.6f", t);
  }
  printf("]}\n");
  bert_free(m);
  for (int64_t i = 0; i < n; i++)
    free(texts[i]);
  free(texts);
  free(out);
  return 0;
}
