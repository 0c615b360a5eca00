/*
 * The test oracles, all of them: the shared basics (oracle_base.h) and one
 * oracle per topic (oracle_pos.h, oracle_mask.h, oracle_fwd.h,
 * oracle_bwd.h). Including one topic's header is enough for that topic.
 */
#ifndef ATTN_TEST_ORACLE_H
#define ATTN_TEST_ORACLE_H

#include "oracle_base.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"
#include "oracle_mask.h"
#include "oracle_pos.h"

#endif /* ATTN_TEST_ORACLE_H */
