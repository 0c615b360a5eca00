/*
 * train_pictures.h - the pictures of `attn train` (train_pictures.c).
 * Each writes a PNG at path or ends the command with a clear error.
 */
#ifndef ATTN_TOOLS_TRAIN_PICTURES_H
#define ATTN_TOOLS_TRAIN_PICTURES_H

#include "encdec.h"
#include "vit.h"

#include <stdint.h>

/* The loss per step (light) and its running mean over 1% of the steps
 * (dark), log10 scale with a grid line at every power of ten; axes
 * numbered, a title naming the model. */
void train_loss_png(const double *loss, int64_t n, const char *model,
                    const char *path);
/* encdec: every cross-attention layer for one held-out number, a row of
 * heads per layer; rows are the words written, columns the digits. */
void train_encdec_png(encdec *ed, const char *path);
/* vit: held-out image `example` (left) and, per block and head, the class
 * token's attention over the patches laid out as the image. */
void train_vit_png(vit *vt, const task_digits *digits, int64_t example,
                   const char *path);

#endif
