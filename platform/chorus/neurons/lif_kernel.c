/* Fused LIF + MPS forward and backward over a whole sequence (DESIGN.md, "The spiking core").
 *
 * Layout: every tensor is [T, N] contiguous float32; a call handles neurons [n0, n1) so that the
 * caller can split the work over threads. Forward writes the spikes S and the smoothed potentials H~
 * (the only tensor kept for backward), and optionally the carried potentials V(t-1). Backward
 * recomputes S, the surrogate and the reset derivative from H~ (adding any gradient that reached H~
 * as an output), and returns the partial sum needed
 * for dL/dalpha (see chorus/neurons/fused.py for the recursion).
 *
 * The forward operation order matches chorus.neurons.reference exactly; the file is compiled with
 * -ffp-contract=off so that spikes are bit-identical to the reference. The inner loops are
 * specialised on the settings (always-inline bodies called with constant flags) so that GCC
 * vectorises them; the sigmoid surrogate uses a vectorisable exp accurate to ~2 ulp.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CH 1024
#define CHORUS_PI_2 1.57079632679489661923f
#define INLINE static inline __attribute__((always_inline))

typedef struct {
    float tau, vth, vr, k, c, alpha, one_minus_alpha, sa;
    int decay_input, mps, soft, detach, surrogate; /* surrogate: 0 sigmoid, 1 atan, 2 rect */
} lif_cfg;

/* ---------------------------------------------------------------- forward */

INLINE void fwd_body(const float *restrict x, const float *restrict v0, float *restrict s_out,
                     float *restrict hs_out, float *restrict vprev_out, int64_t T, int64_t N,
                     int64_t n0, int64_t n1, const lif_cfg *cfg, const int decay, const int mps,
                     const int soft) {
    const float tau = cfg->tau, vth = cfg->vth, vr = cfg->vr;
    const float a = cfg->alpha, oma = cfg->one_minus_alpha;
    float v[CH], hs[CH];
    for (int64_t c0 = n0; c0 < n1; c0 += CH) {
        const int64_t len = (n1 - c0) < CH ? (n1 - c0) : CH;
        for (int64_t i = 0; i < len; ++i) {
            v[i] = v0 ? v0[c0 + i] : vr;
            hs[i] = 0.0f;
        }
        for (int64_t t = 0; t < T; ++t) {
            const float *restrict xt = x + t * N + c0;
            float *restrict st = s_out + t * N + c0;
            float *restrict ht = hs_out + t * N + c0;
            if (vprev_out) memcpy(vprev_out + t * N + c0, v, (size_t)len * sizeof(float));
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) {
                const float vi = v[i];
                const float h = decay ? vi + (xt[i] - (vi - vr)) / tau : vi - (vi - vr) / tau + xt[i];
                const float hsi = mps ? a * hs[i] + oma * h : h;
                const float s = (hsi - vth) >= 0.0f ? 1.0f : 0.0f;
                hs[i] = hsi;
                ht[i] = hsi;
                st[i] = s;
                v[i] = soft ? hsi - vth * s : hsi * (1.0f - s) + vr * s;
            }
        }
    }
}

#define FWD(d, m, s) fwd_body(x, v0, s_out, hs_out, vprev_out, T, N, n0, n1, cfg, d, m, s)

void lif_forward(const float *x, const float *v0, float *s_out, float *hs_out, float *vprev_out,
                 int64_t T, int64_t N, int64_t n0, int64_t n1, const lif_cfg *cfg) {
    const int key = (cfg->decay_input ? 4 : 0) | (cfg->mps ? 2 : 0) | (cfg->soft ? 1 : 0);
    switch (key) {
        case 0: FWD(0, 0, 0); break;
        case 1: FWD(0, 0, 1); break;
        case 2: FWD(0, 1, 0); break;
        case 3: FWD(0, 1, 1); break;
        case 4: FWD(1, 0, 0); break;
        case 5: FWD(1, 0, 1); break;
        case 6: FWD(1, 1, 0); break;
        default: FWD(1, 1, 1); break;
    }
}

/* --------------------------------------------------------------- backward */

/* exp(x) for x in float range, vectorisable: Cody-Waite reduction + degree-6 polynomial. */
INLINE float exp_vec(float x) {
    x = x < -80.0f ? -80.0f : (x > 80.0f ? 80.0f : x); /* keeps 1/(1+e^x) out of denormals */
    /* round to nearest with the 1.5*2^23 trick (vectorises, unlike roundf) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

INLINE float surrogate(const int kind, const float sa, const float x) {
    if (kind == 0) {
        const float sg = 1.0f / (1.0f + exp_vec(-(x * sa)));
        return (1.0f - sg) * sg * sa;
    }
    if (kind == 1) {
        const float z = CHORUS_PI_2 * sa * x;
        return sa / 2.0f / (1.0f + z * z);
    }
    return fabsf(x) < sa / 2.0f ? 1.0f / sa : 0.0f;
}

INLINE double bwd_body(const float *restrict gs, const float *restrict ghs_out, const float *restrict hs_in,
                       float *restrict gx,
                       int64_t T, int64_t N, int64_t n0, int64_t n1, const lif_cfg *cfg,
                       const int mps, const int soft, const int detach, const int kind, const int has_gh) {
    const float vth = cfg->vth, vr = cfg->vr, k = cfg->k, c = cfg->c, sa = cfg->sa;
    const float a = cfg->alpha, oma = cfg->one_minus_alpha;
    float gv[CH], ghs[CH], zeros[CH];
    double acc = 0.0;
    for (int64_t c0 = n0; c0 < n1; c0 += CH) {
        const int64_t len = (n1 - c0) < CH ? (n1 - c0) : CH;
        for (int64_t i = 0; i < len; ++i) { gv[i] = 0.0f; ghs[i] = 0.0f; zeros[i] = 0.0f; }
        for (int64_t t = T - 1; t >= 0; --t) {
            const float *restrict gst = gs + t * N + c0;
            const float *restrict ght = has_gh ? ghs_out + t * N + c0 : 0;
            const float *restrict ht = hs_in + t * N + c0;
            float *restrict gxt = gx + t * N + c0;
            const float *restrict hp = t > 0 ? hs_in + (t - 1) * N + c0 : zeros; /* H~(0) = 0 */
            float part = 0.0f;
#pragma omp simd reduction(+ : part)
            for (int64_t i = 0; i < len; ++i) {
                const float h = ht[i];
                const float xs = h - vth;
                const float s = xs >= 0.0f ? 1.0f : 0.0f;
                const float sg = surrogate(kind, sa, xs);
                float dvdh;
                if (soft) dvdh = detach ? 1.0f : 1.0f - vth * sg;
                else dvdh = detach ? 1.0f - s : (1.0f - s) + (vr - h) * sg;
                float g = gst[i] * sg + gv[i] * dvdh;
                if (has_gh) g += ght[i];
                float gh = g;
                if (mps) {
                    g += a * ghs[i];
                    ghs[i] = g;
                    part += g * (h - hp[i]);
                    gh = oma * g;
                }
                gxt[i] = c * gh;
                gv[i] = k * gh;
            }
            acc += part;
        }
    }
    return acc;
}

#define BWD_G(m, s, d, kd)                                                                   \
    do {                                                                                     \
        if (ghs_out) return bwd_body(gs, ghs_out, hs_in, gx, T, N, n0, n1, cfg, m, s, d, kd, 1); \
        return bwd_body(gs, ghs_out, hs_in, gx, T, N, n0, n1, cfg, m, s, d, kd, 0);           \
    } while (0)
#define BWD_K(m, s, d)                                \
    do {                                              \
        if (cfg->surrogate == 0) BWD_G(m, s, d, 0);    \
        if (cfg->surrogate == 1) BWD_G(m, s, d, 1);    \
        BWD_G(m, s, d, 2);                             \
    } while (0)

/* gs = dL/dS, ghs_out = dL/dH~ from the caller (nullable: H~ unused downstream).
 * Returns sum_t sum_n dL/dH~(t) * (H~(t) - H~(t-1)) over [n0, n1); 0 without MPS. */
double lif_backward(const float *gs, const float *ghs_out, const float *hs_in, float *gx, int64_t T, int64_t N, int64_t n0,
                    int64_t n1, const lif_cfg *cfg) {
    const int key = (cfg->mps ? 4 : 0) | (cfg->soft ? 2 : 0) | (cfg->detach ? 1 : 0);
    switch (key) {
        case 0: BWD_K(0, 0, 0);
        case 1: BWD_K(0, 0, 1);
        case 2: BWD_K(0, 1, 0);
        case 3: BWD_K(0, 1, 1);
        case 4: BWD_K(1, 0, 0);
        case 5: BWD_K(1, 0, 1);
        case 6: BWD_K(1, 1, 0);
        default: BWD_K(1, 1, 1);
    }
}
