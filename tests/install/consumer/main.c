/* Consumer smoke test: an outside project that only sees the installed
 * <attn.h> and library. One attention call on a 1x4x2x8 problem
 * ([batch, seq, heads, head_dim]); the output must be finite and each row a
 * convex combination of the value rows (so within [min v, max v]). */
#include <attn.h>

#include <math.h>
#include <stdio.h>

#define B 1
#define S 4
#define H 2
#define D 8
#define N (B * S * H * D)

int main(void) {
  float q[N], k[N], v[N], o[N];
  float vmin = INFINITY, vmax = -INFINITY;
  for (int i = 0; i < N; ++i) {
    q[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    k[i] = (float)((i * 5) % 13) / 13.0f - 0.5f;
    v[i] = (float)((i * 3) % 17) / 17.0f - 0.5f;
    o[i] = NAN;
    if (v[i] < vmin)
      vmin = v[i];
    if (v[i] > vmax)
      vmax = v[i];
  }

  if (attn_version_number() != ATTN_VERSION_NUMBER) {
    fprintf(stderr, "header/library version mismatch: %d vs %d\n",
            attn_version_number(), ATTN_VERSION_NUMBER);
    return 1;
  }

  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, B, S, H, D);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, B, S, H, D);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, B, S, H, D);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, B, S, H, D);
  p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  p.num_threads = 1;

  attn_status s = attn_forward(NULL, &p);
  if (s != ATTN_OK) {
    fprintf(stderr, "attn_forward: %s\n", attn_strerror(s));
    return 1;
  }
  for (int i = 0; i < N; ++i) {
    if (!isfinite(o[i]) || o[i] < vmin - 1e-5f || o[i] > vmax + 1e-5f) {
      fprintf(stderr, "o[%d] = %g is not finite or out of [%g, %g]\n", i,
              (double)o[i], (double)vmin, (double)vmax);
      return 1;
    }
  }
  /* Causal row 0 sees only key 0: o must equal v there, per head. */
  for (int h = 0; h < H; ++h) {
    for (int d = 0; d < D; ++d) {
      float got = o[h * D + d], want = v[h * D + d];
      if (fabsf(got - want) > 1e-6f) {
        fprintf(stderr, "causal row 0, head %d: o=%g, want v=%g\n", h,
                (double)got, (double)want);
        return 1;
      }
    }
  }
  printf("consumer ok: libattn %s, o[0] = %.6f\n", attn_version_string(),
         (double)o[0]);
  return 0;
}
