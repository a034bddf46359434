/* rope.c - the rotation speeds of RoPE for a layer kind, the one definition
 * both compute backends turn by (cpu.c, and kernels/backend_cuda.cu, which
 * compiles this file into its module as it does the quant code). */
#include <math.h>

#include "model.h"

void model_rope_inv_freq(const struct model_hparams *hp, double base, double scale,
                         const float *ff, float *inv, float *mscale)
{
    const int half = hp->n_rot / 2;
    double lo = 0, hi = 0, ext = 0;
    *mscale = 1.0f;
    if (hp->rope_yarn && hp->yarn_ext_factor != 0) {
        /* the pair index at which a dimension turns BETA rotations in the
         * original context: n_rot ln(n_orig / (2 pi beta)) / (2 ln base) */
        const double k = hp->n_rot / (2.0 * log(base)), orig = hp->yarn_n_ctx_orig;
        lo = floor(k * log(orig / (hp->yarn_beta_fast * 2.0 * M_PI)));
        hi = ceil(k * log(orig / (hp->yarn_beta_slow * 2.0 * M_PI)));
        lo = lo > 0 ? lo : 0;
        hi = hi < hp->n_rot - 1 ? hi : hp->n_rot - 1;
        ext = hp->yarn_ext_factor;
        *mscale = (float)(hp->yarn_attn_factor * (1.0 + 0.1 * log(1.0 / scale)));
    }
    for (int i = 0; i < half; i++) {
        const double f = pow(base, -2.0 * i / hp->n_rot) / (ff ? (double)ff[i] : 1.0);
        double mix = 0; /* weight of the unscaled angle */
        if (ext != 0) {
            const double y = (i - lo) / (hi - lo > 0.001 ? hi - lo : 0.001);
            mix = (1.0 - (y < 0 ? 0 : y > 1 ? 1 : y)) * ext;
        }
        inv[i] = (float)(f * (scale * (1.0 - mix) + mix));
    }
}
