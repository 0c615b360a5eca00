/*
 * Shared by the parts of test_status (test_status.c, status_fwd.c,
 * status_new.c, status_bwd.c, status_helpers.c): the pass/fail counters,
 * the small valid problem of the forward's checks and the expect helpers.
 */
#ifndef ATTN_TEST_STATUS_H
#define ATTN_TEST_STATUS_H

#include "attn.h"
#include "test_common.h"

#include <stdio.h>

extern long n_pass, n_fail;

/* A small valid problem: batch 2, seq_q 5, seq_k 7, heads 4/2, dims 8/8, on
 * fixed buffers (the checks point views into them and next to them). */
enum { B = 2, SQ = 5, SK = 7, HQ = 4, HK = 2, D = 8, DV = 8 };

#define BIG_D 257

extern float qbuf[B * SQ * HQ * BIG_D], kbuf[B * SK * HQ * BIG_D],
    vbuf[B * SK * HQ * BIG_D], obuf[B * SQ * HQ * BIG_D + 64];
extern float lsebuf[B * HQ * SQ * 2];
extern float biasbuf[B * HQ * SQ * (SK + 1)];
extern uint8_t maskbuf[B * HQ * SQ * (SK + 1)];
extern char msg[512];

/* p = the small valid problem, error_message = msg (cleared). */
void base(attn_params *p);
const char *sname(attn_status s);

/*
 * Runs attn_forward_check and attn_forward on p; attn_forward must return
 * want (or alt, when alt != want: an accepted alternative where attn.h reads
 * both ways), attn_forward_check the same status (when check_must_agree).
 * On error the message must be filled and o untouched.
 */
attn_status expect_mode(const char *what, attn_params *p, attn_status want,
                        attn_status alt, int check_must_agree);
/* attn_forward must return want or alt; attn_forward_check the same. */
attn_status expect2(const char *what, attn_params *p, attn_status want,
                    attn_status alt);
attn_status expect(const char *what, attn_params *p, attn_status want);

/* The groups of checks. */
void status_fwd_tests(void);       /* status_fwd.c: the forward's validation */
void status_new_tests(void);       /* status_new.c: prefix-LM, positions     */
void status_bwd_tests(void);       /* status_bwd.c: the backward's validation */
void status_helper_tests(void);    /* status_helpers.c                       */
void status_window_extremes(void); /* last: UBSan stops here on overflow   */

#endif /* ATTN_TEST_STATUS_H */
