/* The bf16 peak probe of ISA amxbf16: AMX tile dot products (tdpbf16ps),
 * four accumulating tiles fed by two A and two B tiles, as the kernels'
 * inner steps are (amx_tiles.h). Operands 1.0 and 2^-24, as the vdpbf16ps
 * probe's, so the sums stay finite. Returns the FLOPs done (a step: 16 x 16
 * sums of 32 products, two FLOPs each). */
#include "core/internal.h"
#include "kernels/amx_tiles.h"

double attn_peak_loop_amxbf16(int64_t iters) {
  _Alignas(64) uint16_t a[16 * 32], b[16 * 32];
  _Alignas(64) float c[16 * 16];
  for (int i = 0; i < 16 * 32; i++)
    a[i] = 0x3f80, b[i] = 0x3380; /* 1.0 and 2^-24 */
  amx_config();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, b, 64);
  _tile_loadd(7, b, 64);
  for (int64_t it = 0; it < iters; it++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  volatile float sink = c[0];
  (void)sink;
  return (double)iters * 4.0 * 16.0 * 16.0 * 32.0 * 2.0;
}
