/*
 * cmd_linear.c - `--linear` for `attn run` and `attn grad` (cmd_linear.h).
 *
 * Linear attention has no scores, no softmax, no positions and no mask
 * but the causal one, so of run's and grad's options it honours the files
 * (--q --k --v --out; --dout --dq --dk --dv), --layout, --dtype,
 * --threads, --causal (bottom-right) and --causal-top-left. Any other
 * option given with --linear, including ones added later, is a usage
 * error naming it and why.
 */
#include "cmd_linear.h"

#include "cli.h"

#include <string.h>

/* The options --linear combines with. */
static const char *const honoured[] = {
    "--linear", "--q",     "--k",       "--v",      "--out",
    "--layout", "--dtype", "--threads", "--causal", "--causal-top-left",
    "--dout",   "--dq",    "--dk",      "--dv",     "--help",
};

/* Why an option cannot be honoured. */
static const char *reason(const char *name) {
  static const struct {
    const char *name, *why;
  } table[] = {
      {"--window", "a mask"},
      {"--prefix", "a mask"},
      {"--mask", "a mask"},
      {"--kv-lens", "a mask"},
      {"--cu-seqlens-q", "a mask"},
      {"--cu-seqlens-k", "a mask"},
      {"--global", "a mask"},
      {"--sparse", "a mask"},
      {"--block-mask", "a mask"},
      {"--block-size", "a mask"},
      {"--scale", "a score"},
      {"--softcap", "a score"},
      {"--alibi", "a score"},
      {"--bias", "a score"},
      {"--dbias", "a score"},
      {"--relative-bias", "a score"},
      {"--drelative-bias", "a score"},
      {"--buckets", "a score"},
      {"--max-distance", "a score"},
      {"--bidirectional", "a score"},
      {"--sinks", "a softmax"},
      {"--dsinks", "a softmax"},
      {"--dropout", "a softmax"},
      {"--seed", "a softmax"},
      {"--lse", "a softmax"},
      {"--rope", "a position"},
      {"--rope-style", "a position"},
      {"--rope-dims", "a position"},
      {"--rope-scaling", "a position"},
      {"--rope-original-max", "a position"},
      {"--q-pos-offset", "a position"},
      {"--k-pos-offset", "a position"},
      {"--kv-quant", "a dtype"},
      {"--isa", "a kernel"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i].name, name) == 0) {
      const char *w = table[i].why;
      return strcmp(w, "a mask") == 0
                 ? "linear attention has no mask but --causal and "
                   "--causal-top-left"
             : strcmp(w, "a score") == 0
                 ? "linear attention has no scores to scale or bias (its "
                   "weights are phi(q) . phi(k), phi = elu + 1)"
             : strcmp(w, "a softmax") == 0
                 ? "linear attention has no softmax (no LSE, sinks or "
                   "dropout)"
             : strcmp(w, "a position") == 0
                 ? "linear attention reads no positions (no RoPE or offsets)"
             : strcmp(w, "a dtype") == 0
                 ? "linear attention reads f32, bf16 or f16 K and V only"
                 : "linear attention has one portable kernel (no --isa)";
    }
  return "not supported by linear attention";
}

int linear_requested(int argc, char **argv, const char *cmd) {
  int linear = 0;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--linear") == 0)
      linear = 1;
  if (!linear)
    return 0;
  for (int i = 2; i < argc; i++) {
    const char *s = argv[i];
    if (strncmp(s, "--", 2) != 0)
      continue; /* a value: options' values never start with -- */
    char name[64];
    const size_t n = strcspn(s, "=");
    if (n >= sizeof name)
      continue; /* the parser reports it */
    memcpy(name, s, n);
    name[n] = '\0';
    int ok = 0;
    for (size_t k = 0; k < sizeof honoured / sizeof honoured[0]; k++)
      ok |= strcmp(honoured[k], name) == 0;
    if (!ok)
      cli_fail(CLI_EXIT_USAGE, "%s: --linear cannot be combined with %s: %s",
               cmd, name, reason(name));
  }
  return 1;
}

/* p's tensors and options as linear attention's. */
static void to_linear(const attn_params *p, attn_linear_params *lp, char *msg,
                      size_t size) {
  attn_linear_params_init(lp);
  lp->q = p->q;
  lp->k = p->k;
  lp->v = p->v;
  lp->o = p->o;
  lp->dout = p->dout;
  lp->dq = p->dq;
  lp->dk = p->dk;
  lp->dv = p->dv;
  lp->causal = p->causal;
  lp->num_threads = p->num_threads;
  lp->error_message = msg;
  lp->error_message_size = size;
}

void linear_forward(attn_params *p) {
  char msg[512] = {0};
  attn_linear_params lp;
  to_linear(p, &lp, msg, sizeof msg);
  const attn_status st = attn_linear_forward(NULL, &lp);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
}

void linear_backward(attn_params *p) {
  char msg[512] = {0};
  attn_linear_params lp;
  to_linear(p, &lp, msg, sizeof msg);
  const attn_status st = attn_linear_backward(NULL, &lp);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
}
