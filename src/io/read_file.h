/* read_file.h - a whole regular file into memory, for the model readers
 * (gguf.c, safetensors.c).
 *
 * Read, not mapped: a mapped file that another process truncates faults
 * (SIGBUS) on the next read of a page past its new end; a read says so
 * instead (docs/decisions.md, "files read, not mapped").
 */
#ifndef ATTN_IO_READ_FILE_H
#define ATTN_IO_READ_FILE_H

#include <stddef.h>

/* Reads n bytes from fd (retrying on EINTR) into a new buffer, *out (free
 * it). Returns 0, or -1 with *out NULL and why in why[why_size]: out of
 * memory, or a short read (the file shrank while read). Does not close
 * fd. */
int io_read_file(int fd, size_t n, unsigned char **out, char *why,
                 size_t why_size);

#endif
