/* The optional context: per-caller defaults for threads and ISA. */
#include "core/internal.h"

#include <stdlib.h>
#include <unistd.h>

struct attn_context {
  int num_threads; /* resolved, >= 1 */
  attn_isa isa;    /* resolved, never AUTO */
};

void attn_context_options_init(attn_context_options *opt) {
  if (!opt)
    return;
  opt->num_threads = 0;
  opt->isa = ATTN_ISA_AUTO;
}

static int default_threads(void) {
  const char *env = getenv("ATTN_NUM_THREADS");
  if (env) {
    char *end = NULL;
    long n = strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n <= 1024)
      return (int)n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    n = 1;
  if (n > 1024)
    n = 1024;
  return (int)n;
}

attn_status attn_context_create(attn_context **out,
                                const attn_context_options *opt) {
  if (!out)
    return ATTN_ERR_NULL_POINTER;
  *out = NULL;
  attn_context_options o;
  attn_context_options_init(&o);
  if (opt)
    o = *opt;
  if (o.num_threads < 0)
    return ATTN_ERR_INVALID_ARGUMENT;
  attn_isa isa = o.isa;
  if (isa == ATTN_ISA_AUTO)
    isa = attn_isa_best();
  if (attn_isa_name(isa) == NULL)
    return ATTN_ERR_INVALID_ARGUMENT;
  if (!attn_isa_supported(isa))
    return ATTN_ERR_UNSUPPORTED_ISA;
  attn_context *c = malloc(sizeof *c);
  if (!c)
    return ATTN_ERR_OUT_OF_MEMORY;
  c->num_threads = o.num_threads > 0 ? o.num_threads : default_threads();
  c->isa = isa;
  *out = c;
  return ATTN_OK;
}

void attn_context_free(attn_context *ctx) { free(ctx); }

attn_isa attn_context_isa(const attn_context *ctx) {
  return ctx ? ctx->isa : attn_isa_best();
}

int attn_context_threads(const attn_context *ctx) {
  return ctx ? ctx->num_threads : default_threads();
}
