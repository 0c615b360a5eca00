/* The optional context: per-caller defaults for threads and ISA. */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct attn_context {
  int num_threads; /* resolved, >= 1 */
  attn_isa isa;    /* resolved, never AUTO */
};

/* Every attn_context_options size a released attn.h declared. */
static int options_size_known(size_t size) {
  return size == sizeof(attn_context_options);
}

void attn_context_options_init_sized(attn_context_options *opt, size_t size) {
  if (!opt || !options_size_known(size))
    return;
  attn_context_options o;
  memset(&o, 0, sizeof o);
  o.num_threads = 0;
  o.isa = ATTN_ISA_AUTO;
  memcpy(opt, &o, size);
}

void attn_context_options_init(attn_context_options *opt) {
  attn_context_options_init_sized(opt, sizeof *opt);
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

attn_status attn_context_create_sized(attn_context **out,
                                      const attn_context_options *opt,
                                      size_t size) {
  if (!out)
    return ATTN_ERR_NULL_POINTER;
  *out = NULL;
  attn_context_options o;
  attn_context_options_init(&o);
  if (opt) {
    if (!options_size_known(size))
      return ATTN_ERR_ABI;
    memcpy(&o, opt, size);
  }
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

attn_status attn_context_create(attn_context **out,
                                const attn_context_options *opt) {
  return attn_context_create_sized(out, opt, sizeof *opt);
}

void attn_context_free(attn_context *ctx) { free(ctx); }

attn_isa attn_context_isa(const attn_context *ctx) {
  return ctx ? ctx->isa : attn_isa_best();
}

int attn_context_threads(const attn_context *ctx) {
  return ctx ? ctx->num_threads : default_threads();
}
