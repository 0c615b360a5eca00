/* read_file.c - see read_file.h. */
#include "read_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int io_read_file(int fd, size_t n, unsigned char **out, char *why,
                 size_t why_size) {
  *out = NULL;
  unsigned char *m = malloc(n ? n : 1);
  if (!m) {
    snprintf(why, why_size, "out of memory (%zu bytes)", n);
    return -1;
  }
  size_t got = 0;
  while (got < n) {
    const ssize_t r = read(fd, m + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  if (got < n) {
    free(m);
    snprintf(why, why_size, "read %zu of %zu bytes (the file shrank?)", got, n);
    return -1;
  }
  *out = m;
  return 0;
}
