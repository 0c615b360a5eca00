/* Linear attention's work items in plain C (linear_body.h): the reference,
 * and what every machine without AVX2 + FMA runs. */
#define ATTN_SIMD_GENERIC 1
#define LIN_NAME(x) x##_generic
#define LIN_MADD(a, x, y) ((a) * (x) + (y))
#include "linear/linear_body.h"
