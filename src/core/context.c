/* The context: per-caller defaults for threads and ISA, and the thread pool
 * (threads.c) of the calls made under it.
 *
 * The default context serves ctx == NULL. It is made lazily by the first
 * call that needs it, published with a compare-and-swap (racing first
 * callers each make one; the losers free theirs, which has no workers yet)
 * and never freed: with the CPU features (cpu.c) it is the library's only
 * global state. When the environment makes it impossible (a bad
 * ATTN_NUM_THREADS or ATTN_ISA) nothing is published: attn_context_resolve
 * reports the reason to every call, and reads the environment again next
 * time. */
#include "core/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct attn_context {
  int num_threads; /* resolved, >= 1 */
  attn_isa isa;    /* resolved, never AUTO */
  attn_pool *pool; /* never NULL */
  /* one large workspace kept for the next call (workspace.c), or NULL */
  _Atomic(void *) spare;
};

#define ENV_THREADS_MAX 1024

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

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    n = 1;
  if (n > ENV_THREADS_MAX)
    n = ENV_THREADS_MAX;
  return (int)n;
}

/* ATTN_NUM_THREADS: unset or empty = every online CPU; otherwise decimal
 * digits only, 1..1024. On a bad value writes the reason to why. */
static attn_status env_threads(int *out, char *why, size_t why_size) {
  const char *env = getenv("ATTN_NUM_THREADS");
  if (!env || !*env) {
    *out = online_cpus();
    return ATTN_OK;
  }
  long n = 0;
  int ok = 1;
  for (const char *c = env; *c && ok; c++) {
    if (*c < '0' || *c > '9')
      ok = 0;
    else if ((n = n * 10 + (*c - '0')) > ENV_THREADS_MAX)
      ok = 0;
  }
  if (!ok || n < 1) {
    if (why && why_size)
      snprintf(why, why_size,
               "ATTN_NUM_THREADS='%.64s%s' is not an integer in 1..%d", env,
               strlen(env) > 64 ? "..." : "", ENV_THREADS_MAX);
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  *out = (int)n;
  return ATTN_OK;
}

/* Tolerant: a bad ATTN_NUM_THREADS counts as unset. */
static int default_threads(void) {
  int n;
  if (env_threads(&n, NULL, 0) != ATTN_OK)
    n = online_cpus();
  return n;
}

/* Makes a context from complete options; on failure writes why. */
static attn_status context_make(const attn_context_options *o,
                                attn_context **out, char *why,
                                size_t why_size) {
  *out = NULL;
  if (o->num_threads < 0) {
    snprintf(why, why_size, "num_threads (%d) must be >= 0 (0 = default)",
             o->num_threads);
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  int threads = o->num_threads;
  if (threads == 0) {
    attn_status st = env_threads(&threads, why, why_size);
    if (st != ATTN_OK)
      return st;
  }
  attn_isa isa = o->isa;
  if (isa == ATTN_ISA_AUTO) {
    attn_status st = attn_isa_env(&isa, why, why_size);
    if (st != ATTN_OK)
      return st;
  }
  if (attn_isa_name(isa) == NULL) {
    snprintf(why, why_size, "isa %d is not an attn_isa", (int)isa);
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (!attn_isa_supported(isa)) {
    snprintf(why, why_size, "isa %s is not supported by this CPU",
             attn_isa_name(isa));
    return ATTN_ERR_UNSUPPORTED_ISA;
  }
  attn_context *c = malloc(sizeof *c);
  if (!c) {
    snprintf(why, why_size, "out of memory making a context");
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  c->pool = attn_pool_create();
  if (!c->pool) {
    free(c);
    snprintf(why, why_size, "out of memory making a thread pool");
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  c->num_threads = threads;
  c->isa = isa;
  atomic_init(&c->spare, NULL);
  *out = c;
  return ATTN_OK;
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
  char why[256];
  return context_make(&o, out, why, sizeof why);
}

attn_status attn_context_create(attn_context **out,
                                const attn_context_options *opt) {
  return attn_context_create_sized(out, opt, sizeof *opt);
}

void attn_context_free(attn_context *ctx) {
  if (!ctx)
    return;
  attn_pool_free(ctx->pool);
  free(atomic_load_explicit(&ctx->spare, memory_order_acquire));
  free(ctx);
}

void *attn_context_spare_swap(attn_context *ctx, void *block) {
  return atomic_exchange_explicit(&ctx->spare, block, memory_order_acq_rel);
}

/* ---------------------------------------------------------------------- */
/* The default context                                                     */
/* ---------------------------------------------------------------------- */
static _Atomic(attn_context *) default_ctx;

/* The default context, made if need be; NULL with the reason in why (if
 * why_size > 0) when it cannot be made. */
static attn_context *default_get(attn_status *st, char *why, size_t why_size) {
  attn_context *c = atomic_load_explicit(&default_ctx, memory_order_acquire);
  if (c) {
    *st = ATTN_OK;
    return c;
  }
  attn_context_options o;
  attn_context_options_init(&o);
  char buf[256];
  *st = context_make(&o, &c, buf, sizeof buf);
  if (*st != ATTN_OK) {
    if (why && why_size)
      snprintf(why, why_size, "%s", buf);
    return NULL;
  }
  attn_context *expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(&default_ctx, &expected, c,
                                               memory_order_acq_rel,
                                               memory_order_acquire)) {
    attn_context_free(c); /* another thread published first */
    c = expected;
  }
  return c;
}

attn_status attn_context_resolve(attn_context *ctx, const attn_params *p,
                                 attn_context **out) {
  if (ctx) {
    *out = ctx;
    return ATTN_OK;
  }
  attn_status st;
  char why[256];
  *out = default_get(&st, why, sizeof why);
  if (!*out)
    return attn_fail(p, st, "%s", why);
  return ATTN_OK;
}

attn_pool *attn_context_pool(attn_context *ctx) {
  if (!ctx) {
    attn_status st;
    ctx = default_get(&st, NULL, 0);
  }
  return ctx ? ctx->pool : NULL;
}

attn_isa attn_context_isa(const attn_context *ctx) {
  if (!ctx) {
    attn_status st;
    ctx = default_get(&st, NULL, 0);
  }
  return ctx ? ctx->isa : attn_isa_best();
}

int attn_context_threads(const attn_context *ctx) {
  if (!ctx) {
    attn_status st;
    ctx = default_get(&st, NULL, 0);
  }
  return ctx ? ctx->num_threads : default_threads();
}
