/* Fused LIF + MPS forward and backward over a whole sequence (docs/method.md, "The spiking core").
 *
 * Layout: every tensor is [T, N] contiguous float32; a call handles neurons [n0, n1) so that the
 * caller can split the work over threads. Work proceeds in chunks of neurons whose state lives in
 * small local arrays.
 *
 * The forward writes S (and, for diagnostics, H~ and V(t-1)). The backward keeps nothing from the
 * forward but the input X: it re-runs the forward of each chunk from X into a chunk-sized scratch
 * (cache-resident) holding H(t) and H~(t), then runs the backward recursion on it (see
 * chorus/neurons/recursion.py for the recursion, written once in torch ops). dL/dalpha is accumulated
 * directly as sum_t g(t) * (H~(t-1) - H(t)), never as a difference of H~ divided by 1 - alpha.
 * mps_init "first" (cfg->first): H~(1) = H(1), so the first step carries no alpha term and
 * dL/dH(1) = g(1).
 *
 * Threads: the lif_*_par entry points split the neurons over an OpenMP team. Built with -fopenmp, the
 * library links libgomp.so.1 by soname, which inside a torch process is torch's own OpenMP runtime: the
 * kernel then runs on the very threads torch's ops use (already awake, never oversubscribed). Built
 * without OpenMP they run serially and the caller splits [n0, n1) over its own threads instead.
 *
 * The forward operation order matches chorus.neurons.reference exactly, and the recomputation is the
 * same code, so H~ in the backward is bit-identical to the forward's; the file is compiled with
 * -ffp-contract=off so that spikes are bit-identical to the reference. The inner loops are
 * specialised on the settings (always-inline bodies called with constant flags) so that GCC
 * vectorises them; the sigmoid surrogate uses a vectorisable exp accurate to ~2 ulp.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CH 1024
#define CHORUS_PI_2 1.57079632679489661923f
#define INLINE static inline __attribute__((always_inline))

typedef struct {
    float tau, vth, vr, k, c, alpha, one_minus_alpha, sa;
    int decay_input, mps, soft, detach, surrogate; /* surrogate: 0 sigmoid, 1 atan, 2 rect */
    int first; /* mps_init "first": H~(1) = H(1) */
} lif_cfg;

/* ---------------------------------------------------------------- forward */

/* One chunk of neurons [c0, c0 + len): H~(t) goes to hs_out + t * hs_stride (hs_out already offset
 * to the chunk), H(t) to hc_out + t * hs_stride when write_c, S(t) to s_out + t * N + c0 when write_s. */
INLINE void fwd_chunk(const float *restrict x, const float *restrict v0, float *restrict s_out,
                      float *restrict hs_out, float *restrict hc_out, int64_t hs_stride,
                      float *restrict vprev_out, int64_t T, int64_t N, int64_t c0, int64_t len,
                      const lif_cfg *cfg, const int decay, const int mps, const int soft,
                      const int write_s, const int write_h, const int write_c) {
    const float tau = cfg->tau, vth = cfg->vth, vr = cfg->vr;
    const float a = cfg->alpha, oma = cfg->one_minus_alpha;
    float v[CH], hs[CH];
    for (int64_t i = 0; i < len; ++i) {
        v[i] = v0 ? v0[c0 + i] : vr;
        hs[i] = 0.0f;
    }
    for (int64_t t = 0; t < T; ++t) {
        const float *restrict xt = x + t * N + c0;
        float *restrict st = write_s ? s_out + t * N + c0 : 0;
        float *restrict ht = write_h ? hs_out + t * hs_stride : 0;
        float *restrict ct = write_c ? hc_out + t * hs_stride : 0;
        const int smooth = mps && !(t == 0 && cfg->first);
        if (vprev_out) memcpy(vprev_out + t * N + c0, v, (size_t)len * sizeof(float));
        if (smooth) {
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) {
                const float vi = v[i];
                const float h = decay ? vi + (xt[i] - (vi - vr)) / tau : vi - (vi - vr) / tau + xt[i];
                const float hsi = a * hs[i] + oma * h;
                const float s = (hsi - vth) >= 0.0f ? 1.0f : 0.0f;
                hs[i] = hsi;
                if (write_h) ht[i] = hsi;
                if (write_c) ct[i] = h;
                if (write_s) st[i] = s;
                v[i] = soft ? hsi - vth * s : hsi * (1.0f - s) + vr * s;
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) {
                const float vi = v[i];
                const float h = decay ? vi + (xt[i] - (vi - vr)) / tau : vi - (vi - vr) / tau + xt[i];
                const float s = (h - vth) >= 0.0f ? 1.0f : 0.0f;
                hs[i] = h;
                if (write_h) ht[i] = h;
                if (write_c) ct[i] = h;
                if (write_s) st[i] = s;
                v[i] = soft ? h - vth * s : h * (1.0f - s) + vr * s;
            }
        }
    }
}

#define FWD_CASES(CALL)                                                                    \
    switch ((cfg->decay_input ? 4 : 0) | (cfg->mps ? 2 : 0) | (cfg->soft ? 1 : 0)) {       \
        case 0: CALL(0, 0, 0); break;                                                      \
        case 1: CALL(0, 0, 1); break;                                                      \
        case 2: CALL(0, 1, 0); break;                                                      \
        case 3: CALL(0, 1, 1); break;                                                      \
        case 4: CALL(1, 0, 0); break;                                                      \
        case 5: CALL(1, 0, 1); break;                                                      \
        case 6: CALL(1, 1, 0); break;                                                      \
        default: CALL(1, 1, 1); break;                                                     \
    }

/* Recompute H~ and H of one chunk into scratch_h[T][len] and scratch_c[T][len] (no spikes, no V(t-1)). */
static __attribute__((noinline)) void fwd_chunk_scratch(const float *x, const float *v0, float *scratch_h,
                                                        float *scratch_c, int64_t T, int64_t N, int64_t c0,
                                                        int64_t len, const lif_cfg *cfg) {
#define FWD_SCRATCH(d, m, s) fwd_chunk(x, v0, 0, scratch_h, scratch_c, len, 0, T, N, c0, len, cfg, d, m, s, 0, 1, 1)
    FWD_CASES(FWD_SCRATCH)
#undef FWD_SCRATCH
}

/* hs_out and vprev_out may be NULL (spikes only / no diagnostics). */
void lif_forward(const float *x, const float *v0, float *s_out, float *hs_out, float *vprev_out,
                 int64_t T, int64_t N, int64_t n0, int64_t n1, const lif_cfg *cfg) {
    for (int64_t c0 = n0; c0 < n1; c0 += CH) {
        const int64_t len = (n1 - c0) < CH ? (n1 - c0) : CH;
        float *h = hs_out ? hs_out + c0 : 0;
        if (hs_out) {
#define FWD_SH(d, m, s) fwd_chunk(x, v0, s_out, h, 0, N, vprev_out, T, N, c0, len, cfg, d, m, s, 1, 1, 0)
            FWD_CASES(FWD_SH)
#undef FWD_SH
        } else {
#define FWD_S(d, m, s) fwd_chunk(x, v0, s_out, 0, 0, N, vprev_out, T, N, c0, len, cfg, d, m, s, 1, 0, 0)
            FWD_CASES(FWD_S)
#undef FWD_S
        }
    }
}

/* --------------------------------------------------------------- backward */

/* The backward arithmetic may fuse multiply-adds (the gradients are compared with the reference to
 * fp32 rounding, not bit for bit); the forward above, and the recomputation of H~, never do. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif

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

/* One chunk [c0, c0 + len) of the backward recursion; H~(t) and H(t) are read at hs + t * len and
 * hc + t * len (the scratch). Returns the chunk's sum_t g(t) * (H~(t-1) - H(t)) (H~(0) = 0; no term
 * for the first step under mps_init "first"). */
INLINE double bwd_chunk(const float *restrict gs, const float *restrict ghs_out, const float *restrict hs,
                        const float *restrict hc, float *restrict gx, int64_t T, int64_t N, int64_t c0,
                        int64_t len, const lif_cfg *cfg, const int mps, const int soft, const int detach,
                        const int kind, const int has_gh) {
    const float vth = cfg->vth, vr = cfg->vr, sa = cfg->sa, a = cfg->alpha;
    float gv[CH], gn[CH], zeros[CH];
    double acc = 0.0;
    for (int64_t i = 0; i < len; ++i) { gv[i] = 0.0f; gn[i] = 0.0f; zeros[i] = 0.0f; }
    for (int64_t t = T - 1; t >= 0; --t) {
        const float *restrict gst = gs + t * N + c0;
        const float *restrict ght = has_gh ? ghs_out + t * N + c0 : 0;
        const float *restrict ht = hs + t * len;
        const float *restrict ct = hc + t * len;
        const float *restrict hp = t > 0 ? hs + (t - 1) * len : zeros; /* H~(0) = 0 under "zero" */
        float *restrict gxt = gx + t * N + c0;
        /* dL/dH = (1 - alpha) g with MPS (but g at the first step under "first"): folded into the two
         * factors that use it */
        const int smoothed = mps && !(t == 0 && cfg->first);
        const float k = smoothed ? cfg->k * cfg->one_minus_alpha : cfg->k;
        const float c = smoothed ? cfg->c * cfg->one_minus_alpha : cfg->c;
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
            if (mps) {
                g += a * gn[i];
                gn[i] = g;
                if (smoothed) part += g * (hp[i] - ct[i]);
            }
            gxt[i] = c * g;
            gv[i] = k * g;
        }
        acc += part;
    }
    return acc;
}

#define BWD_G(m, s, d, kd)                                                                              \
    do {                                                                                                \
        if (ghs_out) return bwd_chunk(gs, ghs_out, hs, hc, gx, T, N, c0, len, cfg, m, s, d, kd, 1);       \
        return bwd_chunk(gs, ghs_out, hs, hc, gx, T, N, c0, len, cfg, m, s, d, kd, 0);                 \
    } while (0)
#define BWD_K(m, s, d)                             \
    do {                                           \
        if (cfg->surrogate == 0) BWD_G(m, s, d, 0); \
        if (cfg->surrogate == 1) BWD_G(m, s, d, 1); \
        BWD_G(m, s, d, 2);                          \
    } while (0)

static __attribute__((noinline)) double bwd_chunk_any(const float *gs, const float *ghs_out, const float *hs,
                                                       const float *hc, float *gx, int64_t T, int64_t N,
                                                       int64_t c0, int64_t len, const lif_cfg *cfg) {
    switch ((cfg->mps ? 4 : 0) | (cfg->soft ? 2 : 0) | (cfg->detach ? 1 : 0)) {
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

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* The backward: gs = dL/dS, ghs_out = dL/dH~ from the caller (nullable: H~ unused downstream). H~ and H
 * are recomputed from x (and v0) chunk by chunk into a scratch of at most 2 x 32K floats, so they stay
 * in cache between the two passes. Writes the chunk sums of sum_t g(t) * (H~(t-1) - H(t)) over
 * [n0, n1) to *acc_out (0 without MPS); returns 0, or 1 if the scratch cannot be allocated. */
int lif_backward(const float *x, const float *v0, const float *gs, const float *ghs_out, float *gx,
                 int64_t T, int64_t N, int64_t n0, int64_t n1, const lif_cfg *cfg, double *acc_out) {
    *acc_out = 0.0;
    if (T <= 0 || n1 <= n0) return 0;
    int64_t L = ((int64_t)32768 / T) & ~(int64_t)63;
    L = L < 64 ? 64 : (L > CH ? CH : L);
    float *scratch = (float *)malloc((size_t)(2 * T * L) * sizeof(float));
    if (!scratch) return 1;
    double acc = 0.0;
    for (int64_t c0 = n0; c0 < n1; c0 += L) {
        const int64_t len = (n1 - c0) < L ? (n1 - c0) : L;
        float *sh = scratch, *sc = scratch + T * len;
        fwd_chunk_scratch(x, v0, sh, sc, T, N, c0, len, cfg);
        acc += bwd_chunk_any(gs, ghs_out, sh, sc, gx, T, N, c0, len, cfg);
    }
    free(scratch);
    *acc_out = acc;
    return 0;
}

/* ------------------------------------------------------- OpenMP entry points */

#define MAX_THREADS 256

int lif_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Neurons of thread id out of nt: equal slices rounded to 64 neurons (cache lines). */
static void slice(int64_t N, int nt, int id, int64_t *a, int64_t *b) {
    int64_t step = (N + nt - 1) / nt;
    step = (step + 63) / 64 * 64;
    *a = (int64_t)id * step < N ? (int64_t)id * step : N;
    *b = *a + step < N ? *a + step : N;
}

#ifdef _OPENMP
#define TEAM_BEGIN(nthreads)                                   \
    _Pragma("omp parallel num_threads(nthreads)") {             \
        const int id = omp_get_thread_num(), nt = omp_get_num_threads();
#else
#define TEAM_BEGIN(nthreads) {                                  \
        const int id = 0, nt = 1;
#endif
#define TEAM_END }

static int clamp_threads(int nthreads) {
    return nthreads < 1 ? 1 : (nthreads > MAX_THREADS ? MAX_THREADS : nthreads);
}

void lif_forward_par(const float *x, const float *v0, float *s_out, float *hs_out, float *vprev_out,
                     int64_t T, int64_t N, int nthreads, const lif_cfg *cfg) {
    nthreads = clamp_threads(nthreads);
    TEAM_BEGIN(nthreads)
        int64_t a, b;
        slice(N, nt, id, &a, &b);
        if (a < b) lif_forward(x, v0, s_out, hs_out, vprev_out, T, N, a, b, cfg);
    TEAM_END
}

/* Partial sums are added in thread order, so the result only depends on the thread count. */
int lif_backward_par(const float *x, const float *v0, const float *gs, const float *ghs_out, float *gx,
                     int64_t T, int64_t N, int nthreads, const lif_cfg *cfg, double *acc_out) {
    double parts[MAX_THREADS] = {0};
    int fail[MAX_THREADS] = {0};
    nthreads = clamp_threads(nthreads);
    TEAM_BEGIN(nthreads)
        int64_t a, b;
        slice(N, nt, id, &a, &b);
        if (a < b) fail[id] = lif_backward(x, v0, gs, ghs_out, gx, T, N, a, b, cfg, &parts[id]);
    TEAM_END
    double acc = 0.0;
    int bad = 0;
    for (int i = 0; i < nthreads; ++i) {
        acc += parts[i];
        bad |= fail[i];
    }
    *acc_out = acc;
    return bad;
}
