/* Consumer smoke test of the installed layer library: an outside program
 * that sees only <attn/layer.h> and links -lattn_layer (pkg-config
 * attn-layer). A self-attention layer (d_model 8, 2 heads, causal) built,
 * initialised from a seed, run forward and backward twice: the output and
 * the gradients must be finite, and the second backward must add the same
 * parameter gradients again (they accumulate). */
#include <attn/layer.h>

#include <math.h>
#include <stdio.h>

#define B 2
#define S 5
#define E 8

int main(void) {
  attn_layer_config cfg;
  attn_layer *L = NULL;
  attn_layer_call c;
  attn_params opt;
  char err[256] = "";
  float x[B * S * E], out[B * S * E], dout[B * S * E], dx[B * S * E];
  float g1 = 0, g2 = 0;
  int64_t n = 0;
  for (int i = 0; i < B * S * E; i++) {
    x[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    dout[i] = (float)((i * 5) % 13) / 13.0f - 0.5f;
  }
  attn_layer_config_init(&cfg);
  cfg.d_model = E;
  cfg.heads_q = 2;
  cfg.position = ATTN_LAYER_POS_ALIBI;
  if (attn_layer_create(&cfg, &L, err, sizeof err) != ATTN_OK) {
    fprintf(stderr, "create: %s\n", err);
    return 1;
  }
  attn_layer_init_weights(L, 1);
  attn_params_init(&opt);
  opt.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  attn_layer_call_init(&c);
  c.batch = B;
  c.seq_q = S;
  c.x = x;
  c.out = out;
  c.dout = dout;
  c.dx = dx;
  c.options = &opt;
  c.error_message = err;
  c.error_message_size = sizeof err;
  for (int pass = 0; pass < 2; pass++) {
    float s = 0;
    const float *g;
    if (attn_layer_forward(L, NULL, &c) != ATTN_OK ||
        attn_layer_backward(L, NULL, &c) != ATTN_OK) {
      fprintf(stderr, "layer: %s\n", err);
      return 1;
    }
    g = attn_layer_grads(L, &n);
    for (int64_t i = 0; i < n; i++)
      s += fabsf(g[i]);
    if (pass == 0)
      g1 = s;
    else
      g2 = s;
  }
  for (int i = 0; i < B * S * E; i++)
    if (!isfinite(out[i]) || !isfinite(dx[i])) {
      fprintf(stderr, "non-finite output or gradient at %d\n", i);
      return 1;
    }
  if (!(g1 > 0) || fabsf(g2 - 2 * g1) > 1e-4f * g1) {
    fprintf(stderr, "gradients do not accumulate: %g then %g\n", (double)g1,
            (double)g2);
    return 1;
  }
  printf("layer consumer ok: %d tensors, %lld parameters\n",
         attn_layer_num_params(L), (long long)n);
  attn_layer_free(L);
  return 0;
}
