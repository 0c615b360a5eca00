/* sparse_split.h - Child et al.'s patterns as two dense calls merged by
 * LSE (sparse_split.c), used by attn_forward and attn_backward. */
#ifndef ATTN_SPARSE_SPLIT_H
#define ATTN_SPARSE_SPLIT_H

#include "core/internal.h"
#include "kernels/plan.h"

/* 1 when the prepared call is a strided or fixed pattern this path takes
 * (see sparse_split.c for the combinations), 0 for the tile path. With
 * or without a caller workspace (the same answer for the size query and
 * the call). */
int attn_split_eligible(const attn_plan *pl);
/* The call, prepared and eligible, done as two parts and a merge. */
attn_status attn_split_forward(const attn_plan *pl);
attn_status attn_split_backward(const attn_plan *pl);
/* The caller workspace either pass needs (bwd: the backward's): every
 * temporary and the larger of the parts' own workspaces. */
attn_status attn_split_workspace_size(const attn_plan *pl, int bwd,
                                      size_t *bytes);

#endif
