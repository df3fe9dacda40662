"""SGE-LA inference for small batches as one fused C function (what the live pipeline sends).

Why. The live pipeline encodes a few windows at a time (1 to about 12 with their mirror images). At
those sizes the onnxruntime graph (about 1,000 nodes) pays its per-node overhead, and the BLAS
libraries at hand run products of 2 to 8 rows poorly. And at batch 1 the time goes into reading
weights: each of the 6 decoder steps and each encoder frame rereads its matrices, about 9.65 M
weights per axis and window, and the 25 MB of float32 weights do not stay in a shared L3 cache.

What. `SmallBatchAGE` runs `SGELA.age` (frame level, eval mode) as one C call: per axis the encoder
layer by layer (the input products of all frames in one pass, then the recurrence), the attention
keys, then the decoder steps with Luong attention and input feeding, exactly the model's operations
(only the order of summation differs). Every product goes through one micro-kernel that loads each
weight vector once for up to 6 rows, with the LSTM gates (sigmoid, tanh, the cell update) applied
to the accumulators in registers; weights are packed once, per vector of units (16 with AVX-512)
with their four gates side by side; buffers are allocated once per thread. A matrix whose values
are all exactly representable in float16, as the shipped weights are (they are stored as float16),
is kept in float16 and widened to float32 as it is loaded: the same values, half the bytes to
read, and the shipped model's 12.5 MB stay in cache. All arithmetic is float32, so the result
equals `SGELA.age` within fast.TOLERANCE (measured: under 1e-6), which `FastAGE` checks whenever it
builds one.

int8 (`precision="int8"`). At batch 1 the float path runs at about a quarter of an AVX-512 core's
float32 peak: each float16 weight vector costs two conversion instructions on the same ports as
its one FMA, and the 2.4 MB a decoder step reads do not stay in a 2 MB L2. With every matrix in
int8 per column (w = q * scale) and every row of its input quantised when the product runs
(xq = round(x / sx), sx = max |x| / 127), the products are summed exactly in int32, a decoder step
reads 1.2 MB, and they are rescaled once in float32 before the same gates and attention. With VNNI
(AVX-512 VNNI, or AVX-VNNI on 8-float builds) one VPDPBUSD adds 64 (32) products; on AVX2 alone,
or AVX-512 without VNNI, the weights are widened to int16 as they are loaded and VPMADDWD adds
them in pairs. The integer sums are the same either way, so every build gives the same AGEs up to
float32 rounding (measured on a Xeon, each build against its own float path, in one run: batch 1
2.9x faster with AVX-512 VNNI, 1.8x with AVX2 alone). The AGEs are not equal to `SGELA.age`'s but
within a cosine of 1e-4 of them (0.99993 at the lowest on 300 demo windows with the shipped
weights), which `FastAGE` checks; evaluate with `--precision int8` says what it does to
recognition.

How it is built. The C source below is compiled on first use by the system C compiler (`$CC`,
else `cc`) for the CPU it runs on (`-march=native`: AVX-512, or AVX2 with FMA and F16C), and the
library is cached under `$XDG_CACHE_HOME/gaitcam/kernels` (~/.cache/...) by a hash of the source,
compiler and CPU. Without a compiler or such a CPU, `kernel_library` returns None and `FastAGE`
uses onnxruntime for every batch size.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from gaitcam.config import KERNEL_PRECISIONS
from gaitcam.model.sgela import AXES, SGELA

log = logging.getLogger(__name__)

ABI = 3  # sb_abi() of the source below
MAX_LAYERS = 8
FLAGS = ("-O3", "-march=native", "-std=gnu11", "-fPIC", "-shared")
W_F32, W_F16, W_Q8 = 0, 1, 2  # Mat.type
INT8_KINDS = {1: "vnni", 2: "vpmaddwd"}  # sb_int8(): how a build sums int8 products (0: it cannot)
ROWS_PER_LANE = {"vnni": 4, "vpmaddwd": 2}  # rows of W packed in one 32-bit lane for each
CHUNK = 256  # windows per C call, which bounds the per-thread buffers (about 11 MB for the shipped model)

SOURCE = r"""/* SGE-LA inference (SGELA.age, frame level) for small batches as one C function; see
   gaitcam/model/small_batch.py for the layout of the weights and why it is written this way. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VW 16 /* floats per vector */
#define RBMAX 6 /* rows per micro-kernel: 6 x 4 accumulators + 4 weight vectors fit in 32 registers */
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define VW 8
#define RBMAX 2 /* 16 registers */
#else
#error "the small-batch kernel needs AVX-512, or AVX2 with FMA and F16C"
#endif
#define PW (4 * VW) /* a panel: 4 vectors of output columns (an LSTM panel: gates i, f, g, o of VW units) */
#define MAXL 8
#define ABI 3

typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vf_u __attribute__((vector_size(VW * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

/* A packed matrix: np panels of K rows x PW columns, float32, float16, or int8 (W_Q8: see below);
   bias, scale, wsum: np * PW. */
enum { W_F32, W_F16, W_Q8 };
typedef struct { const void *w; const float *bias, *scale; const int32_t *wsum; int32_t type, K, np, pad; } Mat;
typedef struct { Mat enc_ih[MAXL], enc_hh[MAXL], dec[MAXL], mem, attn, outm; } Axis;
typedef struct { int32_t L, f, J, H, Hp, Jp, teacher, n_axes; Axis axis[3]; } Net;

int sb_abi(void) { return ABI; }
int sb_vector_width(void) { return VW; }
int sb_max_rows(void) { return RBMAX; }
int sb_sizeof_net(void) { return (int)sizeof(Net); }

#define INLINE static inline __attribute__((always_inline))
INLINE vf splat(float x) { return (vf){0} + x; }
INLINE vf ldf(const float *p) { return *(const vf_u *)p; }
INLINE void stf(float *p, vf v) { *(vf_u *)p = v; }
#if VW == 16
INLINE vf ldh(const uint16_t *p) { return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
#else
INLINE vf ldh(const uint16_t *p) { return (vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
#endif
INLINE vf sel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* exp within about 1 ulp (Cephes expf) after clamping to [-87.3, 88.3]. */
INLINE vf vexp(vf x) {
    x = sel(x < -87.3f, splat(-87.3f), x);
    x = sel(x > 88.3f, splat(88.3f), x);
    vf t = x * 1.44269504088896341f + 12582912.0f; /* round(x / ln 2) in the low mantissa bits */
    vi n = (vi)t - (vi)splat(12582912.0f);
    vf nf = t - 12582912.0f;
    vf r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    vf p = splat(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    return p * (vf)((n + 127) << 23);
}
INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }
/* tanh: Cephes' polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) with x's sign above. */
INLINE vf vtanh(vf x) {
    const vi signbit = (vi){0} + INT32_MIN;
    vi sign = (vi)x & signbit;
    vf a = (vf)((vi)x & ~signbit);
    vf big = 1.0f - 2.0f / (vexp(a + a) + 1.0f);
    vf z = x * x;
    vf small = splat(-5.70498872745E-3f);
    small = small * z + 2.06390887954E-2f;
    small = small * z - 5.37397155531E-2f;
    small = small * z + 1.33314422036E-1f;
    small = small * z - 3.33332819422E-1f;
    small = small * z * x + x;
    return sel(a < 0.625f, small, (vf)((vi)big | sign));
}

/* After the products: store the panel's columns below nstore (mode 0), or (mode 1, an LSTM panel:
   gates i, f, g, o of VW units) update the cell state c and write the output h. */
INLINE void epilogue(int mode, vf g0, vf g1, vf g2, vf g3, float *out, int col, int nstore, float *c, int unit) {
    if (mode == 0) {
        if (col < nstore) stf(out + col, g0);
        if (col + VW < nstore) stf(out + col + VW, g1);
        if (col + 2 * VW < nstore) stf(out + col + 2 * VW, g2);
        if (col + 3 * VW < nstore) stf(out + col + 3 * VW, g3);
    } else {
        vf cn = vsigmoid(g1) * ldf(c + unit) + vsigmoid(g0) * vtanh(g2);
        stf(c + unit, cn);
        stf(out + unit, vsigmoid(g3) * vtanh(cn));
    }
}

/* The micro-kernel, one per row count N: N rows x one panel of init + x[:, :K] @ w[:K], each weight
   vector loaded once and used for all N rows. The accumulators are named variables (not an array)
   so that the compiler keeps them in registers. */
#define R1(M) M(0)
#define R2(M) R1(M) M(1)
#define R3(M) R2(M) M(2)
#define R4(M) R3(M) M(3)
#define R5(M) R4(M) M(4)
#define R6(M) R5(M) M(5)
#define DECL(r) vf a##r##0, a##r##1, a##r##2, a##r##3;
#define INIT(r)                                                                                            \
    if (init) {                                                                                            \
        const float *ip = init + (size_t)r * ldinit + col;                                                 \
        a##r##0 = ldf(ip); a##r##1 = ldf(ip + VW); a##r##2 = ldf(ip + 2 * VW); a##r##3 = ldf(ip + 3 * VW); \
    } else {                                                                                               \
        a##r##0 = a##r##1 = a##r##2 = a##r##3 = splat(0.0f);                                               \
    }
#define FMA(r)                                                                                             \
    { vf xb = splat(x[(size_t)r * ldx + k]);                                                               \
      a##r##0 += xb * w0; a##r##1 += xb * w1; a##r##2 += xb * w2; a##r##3 += xb * w3; }
#define EPI(r) epilogue(mode, a##r##0, a##r##1, a##r##2, a##r##3, out + (size_t)r * ldo, col, nstore,     \
                        c ? c + (size_t)r * ldc : NULL, unit);
#define KERNEL(N, WT, LOAD, SUF)                                                                           \
    static __attribute__((noinline)) void kern##N##SUF(int mode, int K, const WT *w, const float *x, int ldx, \
            const float *init, int ldinit, int col, float *out, int ldo, int nstore, float *c, int ldc, int unit) { \
        R##N(DECL) R##N(INIT)                                                                              \
        for (int k = 0; k < K; k++) {                                                                      \
            const WT *wk = w + (size_t)k * PW;                                                             \
            vf w0 = LOAD(wk), w1 = LOAD(wk + VW), w2 = LOAD(wk + 2 * VW), w3 = LOAD(wk + 3 * VW);          \
            R##N(FMA)                                                                                      \
        }                                                                                                  \
        R##N(EPI)                                                                                          \
    }
#if RBMAX == 6
#define KERNELS(WT, LOAD, SUF) KERNEL(1, WT, LOAD, SUF) KERNEL(2, WT, LOAD, SUF) KERNEL(3, WT, LOAD, SUF) \
    KERNEL(4, WT, LOAD, SUF) KERNEL(5, WT, LOAD, SUF) KERNEL(6, WT, LOAD, SUF)
#define TABLE(SUF) {NULL, kern1##SUF, kern2##SUF, kern3##SUF, kern4##SUF, kern5##SUF, kern6##SUF}
#else
#define KERNELS(WT, LOAD, SUF) KERNEL(1, WT, LOAD, SUF) KERNEL(2, WT, LOAD, SUF)
#define TABLE(SUF) {NULL, kern1##SUF, kern2##SUF}
#endif
KERNELS(float, ldf, f32)
KERNELS(uint16_t, ldh, f16)
typedef void (*kern_f32)(int, int, const float *, const float *, int, const float *, int, int, float *, int, int,
                         float *, int, int);
typedef void (*kern_f16)(int, int, const uint16_t *, const float *, int, const float *, int, int, float *, int, int,
                         float *, int, int);
static const kern_f32 K32[RBMAX + 1] = TABLE(f32);
static const kern_f16 K16[RBMAX + 1] = TABLE(f16);

/* Dynamic int8. W is int8 per column (w = q * scale, |q| <= 127), packed [np][KG][PW][QG]: QG
   consecutive rows of a column in one 32-bit lane. Each x row is quantised when the product runs, to
   xq = round(x / sx), sx = max |x| / 127 per row, and the products are sx * scale * sum_k xq q, summed
   exactly in int32 whichever instructions do it (so every build gives the same sums):
   Q8 1, VNNI (AVX-512 VNNI, or AVX-VNNI on 8-float builds): x stored as u8 = xq + 128, QG 4; one
   VPDPBUSD adds 4 rows' u8 x s8 products per lane, and sum_k (xq + 128) q = sum_k xq q + 128 wsum
   (wsum: the column sums of q) is corrected after the loop.
   Q8 2, VPMADDWD (AVX2, or AVX-512 BW without VNNI): x stored as int16 = xq, QG 2; the weights are
   widened to int16 as they are loaded and one VPMADDWD adds 2 rows' products per lane (at most
   2 x 127 x 127, far from overflowing). */
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#define Q8 1
#elif VW == 8 && defined(__AVXVNNI__)
#define Q8 1
#elif (VW == 16 && defined(__AVX512BW__)) || VW == 8
#define Q8 2
#else
#define Q8 0
#endif
int sb_int8(void) { return Q8; }
#if Q8 == 1
#define QG 4
#define QOFF 128
typedef uint8_t qx_t;
#else
#define QG 2
#define QOFF 0
typedef int16_t qx_t;
#endif
static __thread qx_t *qx; /* this thread's quantised rows and their scales (sb_forward's workspace) */
static __thread float *qsx;
#if Q8
INLINE int32_t ld32(const void *p) { int32_t v; memcpy(&v, p, sizeof v); return v; } /* 4 packed values */
#if VW == 16
typedef __m512i vq;
#define QZERO() _mm512_setzero_si512()
#define QSET1(p) _mm512_set1_epi32(ld32(p))
#define QADD(a, b) _mm512_add_epi32(a, b)
#define QSUB(a, b) _mm512_sub_epi32(a, b)
#define QTOF(v) ((vf)_mm512_cvtepi32_ps(v))
#define QWSUM(p) _mm512_slli_epi32(_mm512_loadu_si512(p), 7)
#if Q8 == 1
#define QW(p) _mm512_loadu_si512(p)
#define QDOT(acc, xb, w) acc = _mm512_dpbusd_epi32(acc, xb, w)
#else
#define QW(p) _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p)))
#define QDOT(acc, xb, w) acc = _mm512_add_epi32(acc, _mm512_madd_epi16(xb, w))
#endif
#else
typedef __m256i vq;
#define QZERO() _mm256_setzero_si256()
#define QSET1(p) _mm256_set1_epi32(ld32(p))
#define QADD(a, b) _mm256_add_epi32(a, b)
#define QSUB(a, b) _mm256_sub_epi32(a, b)
#define QTOF(v) ((vf)_mm256_cvtepi32_ps(v))
#define QWSUM(p) _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(p)), 7)
#if Q8 == 1
#define QW(p) _mm256_loadu_si256((const __m256i *)(p))
#define QDOT(acc, xb, w) acc = _mm256_dpbusd_avx_epi32(acc, xb, w)
#else
#define QW(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
#define QDOT(acc, xb, w) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xb, w))
#endif
#endif
#if Q8 == 1 /* the zero point's share: 128 wsum */
#define QZP(i) vq z##i = QWSUM(wsum + col + i * VW);
#define QACC(r, i) QSUB(q##r##i, z##i)
#else
#define QZP(i)
#define QACC(r, i) q##r##i
#endif
#define QDECL(r) vq q##r##0 = QZERO(), q##r##1 = q##r##0, q##r##2 = q##r##0, q##r##3 = q##r##0;
#define QROW(r)                                                                                            \
    { vq xb = QSET1(xq + (size_t)r * ldxq + QG * g);                                                       \
      QDOT(q##r##0, xb, w0); QDOT(q##r##1, xb, w1); QDOT(q##r##2, xb, w2); QDOT(q##r##3, xb, w3); }
#define QFLOAT(r, i) (QTOF(QACC(r, i)) * (sx * s##i))
#define QFIN(r)                                                                                            \
    vf a##r##0, a##r##1, a##r##2, a##r##3;                                                                 \
    { vf sx = splat(xs[r]);                                                                                \
      a##r##0 = QFLOAT(r, 0); a##r##1 = QFLOAT(r, 1); a##r##2 = QFLOAT(r, 2); a##r##3 = QFLOAT(r, 3);      \
      if (init) { const float *ip = init + (size_t)r * ldinit + col;                                       \
          a##r##0 += ldf(ip); a##r##1 += ldf(ip + VW); a##r##2 += ldf(ip + 2 * VW); a##r##3 += ldf(ip + 3 * VW); } }
#define KQ(N)                                                                                              \
    static __attribute__((noinline)) void kq##N(int mode, int KG, const int8_t *w, const float *scale,    \
            const int32_t *wsum, const qx_t *xq, int ldxq, const float *xs, const float *init, int ldinit, \
            int col, float *out, int ldo, int nstore, float *c, int ldc, int unit) {                       \
        R##N(QDECL)                                                                                        \
        for (int g = 0; g < KG; g++) {                                                                     \
            const int8_t *wg = w + (size_t)g * PW * QG;                                                    \
            vq w0 = QW(wg), w1 = QW(wg + VW * QG), w2 = QW(wg + 2 * VW * QG), w3 = QW(wg + 3 * VW * QG);    \
            R##N(QROW)                                                                                     \
        }                                                                                                  \
        QZP(0) QZP(1) QZP(2) QZP(3)                                                                        \
        vf s0 = ldf(scale + col), s1 = ldf(scale + col + VW), s2 = ldf(scale + col + 2 * VW),              \
           s3 = ldf(scale + col + 3 * VW);                                                                 \
        R##N(QFIN)                                                                                         \
        R##N(EPI)                                                                                          \
    }
typedef void (*kern_q8)(int, int, const int8_t *, const float *, const int32_t *, const qx_t *, int,
                        const float *, const float *, int, int, float *, int, int, float *, int, int);
#if RBMAX == 6
KQ(1) KQ(2) KQ(3) KQ(4) KQ(5) KQ(6)
static const kern_q8 KQ8[RBMAX + 1] = {NULL, kq1, kq2, kq3, kq4, kq5, kq6};
#else
KQ(1) KQ(2)
static const kern_q8 KQ8[RBMAX + 1] = {NULL, kq1, kq2};
#endif

/* M rows of x quantised, QG * KG values each (those past K, the zeros they stand for, are QOFF). */
static void quantize_rows(int M, int K, int KG, const float *x, int ldx) {
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * ldx;
        float mx = 0.0f;
        for (int k = 0; k < K; k++) mx = fmaxf(mx, fabsf(xr[k]));
        float sx = mx > 0.0f ? mx / 127.0f : 1.0f, inv = 1.0f / sx;
        qx_t *q = qx + (size_t)r * QG * KG;
        for (int k = 0; k < K; k++) q[k] = (qx_t)(lrintf(xr[k] * inv) + QOFF);
        for (int k = K; k < QG * KG; k++) q[k] = QOFF;
        qsx[r] = sx;
    }
}
#endif

/* M rows of init + x[:, :K] @ W, stored (mode 0) or as LSTM cells (mode 1). init: NULL (zeros), a
   vector (ldinit 0) or rows. Panels outside, row chunks inside, so a panel is read from memory once
   and stays in cache for the other chunks. */
static void run(int mode, const Mat *m, int M, int K, const float *x, int ldx, const float *init, int ldinit,
                float *out, int ldo, int nstore, float *c, int ldc) {
    int chunks = (M + RBMAX - 1) / RBMAX;
#if Q8
    if (m->type == W_Q8) {
        int KG = (m->K + QG - 1) / QG;
        quantize_rows(M, K, KG, x, ldx);
        for (int p = 0; p < m->np; p++) {
            int r0 = 0;
            for (int ch = 0; ch < chunks; ch++) {
                int rb = (M - r0) / (chunks - ch) + ((M - r0) % (chunks - ch) != 0);
                KQ8[rb](mode, KG, (const int8_t *)m->w + (size_t)p * KG * PW * QG, m->scale, m->wsum,
                        qx + (size_t)r0 * QG * KG, QG * KG, qsx + r0, init ? init + (size_t)r0 * ldinit : NULL, ldinit,
                        p * PW, out + (size_t)r0 * ldo, ldo, nstore, c ? c + (size_t)r0 * ldc : NULL, ldc, p * VW);
                r0 += rb;
            }
        }
        return;
    }
#endif
    for (int p = 0; p < m->np; p++) {
        size_t off = (size_t)p * m->K * PW;
        int r0 = 0;
        for (int ch = 0; ch < chunks; ch++) {
            int rb = (M - r0) / (chunks - ch) + ((M - r0) % (chunks - ch) != 0); /* even chunks */
            const float *xr = x + (size_t)r0 * ldx;
            const float *ir = init ? init + (size_t)r0 * ldinit : NULL;
            float *outr = out + (size_t)r0 * ldo, *cr = c ? c + (size_t)r0 * ldc : NULL;
            if (m->type == W_F16)
                K16[rb](mode, K, (const uint16_t *)m->w + off, xr, ldx, ir, ldinit, p * PW, outr, ldo, nstore, cr, ldc,
                        p * VW);
            else
                K32[rb](mode, K, (const float *)m->w + off, xr, ldx, ir, ldinit, p * PW, outr, ldo, nstore, cr, ldc,
                        p * VW);
            r0 += rb;
        }
    }
}
static void gemm(const Mat *m, int M, int K, const float *x, int ldx, float *out, int ldo, int nstore,
                 const float *init, int ldinit) {
    run(0, m, M, K, x, ldx, init, ldinit, out, ldo, nstore, NULL, 0);
}
static void lstm(const Mat *m, int M, int K, const float *x, int ldx, const float *init, int ldinit, float *c,
                 int ldc, float *h, int ldh) {
    run(1, m, M, K, x, ldx, init, ldinit, h, ldh, 0, c, ldc);
}

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)
enum { XA, PRE, SEQ0, SEQ1, KEYS, CELL, X0, XK, QC, SC, QX, QS, NBUF };
static size_t sizes(const Net *n, int B, size_t s[NBUF]) {
    size_t f = n->f, Hp = n->Hp, K0 = 2 * Hp + (n->teacher ? n->Jp : 0), L = n->L, t = 0;
    s[XA] = ALIGN16(f * B * n->J);                     /* one axis of the windows, [f][B][J] */
    s[PRE] = ALIGN16(f * B * 4 * Hp);                  /* an encoder layer's input products, all frames */
    s[SEQ0] = s[SEQ1] = ALIGN16(f * B * Hp);           /* encoder layer outputs [f][B][Hp], alternating */
    s[KEYS] = ALIGN16(f * B * Hp);                     /* attention keys */
    s[CELL] = ALIGN16(L * B * Hp);                     /* cell states, per layer */
    s[X0] = ALIGN16(2 * B * K0);                       /* decoder layer 0 inputs [h0 | attentional | frame], x2 */
    s[XK] = ALIGN16((L > 1 ? L - 1 : 1) * 2 * B * 2 * Hp); /* layer k inputs [h(k-1) | h(k)], x2 */
    s[QC] = ALIGN16(B * 2 * Hp);                       /* [top-layer output | context] */
    s[SC] = ALIGN16(f + 16);                           /* attention weights of one window */
    s[QX] = ALIGN16(f * B * ((K0 > n->J ? K0 : n->J) + 3) * sizeof(qx_t) / 4); /* int8 weights: quantised rows */
    s[QS] = ALIGN16(f * B);                            /* ... and their scales */
    for (int i = 0; i < NBUF; i++) t += s[i];
    return t;
}
size_t sb_workspace_floats(const Net *n, int B) { size_t s[NBUF]; return sizes(n, B, s); }

static void axis_forward(const Net *n, const Axis *ax, int a, int B, const float *win, float *out, float *ws) {
    const int f = n->f, J = n->J, H = n->H, Hp = n->Hp, L = n->L;
    const int K0 = 2 * Hp + (n->teacher ? n->Jp : 0), K1 = 2 * Hp, G = 4 * Hp;
    size_t s[NBUF];
    float *buf[NBUF];
    sizes(n, B, s);
    buf[0] = ws;
    for (int i = 1; i < NBUF; i++) buf[i] = buf[i - 1] + s[i - 1];
    float *xa = buf[XA], *pre = buf[PRE], *seq[2] = {buf[SEQ0], buf[SEQ1]}, *keys = buf[KEYS], *c = buf[CELL];
    float *X0b = buf[X0], *X1b = buf[XK], *qc = buf[QC], *sc = buf[SC];
    memset(c, 0, (s[CELL] + s[X0] + s[XK] + s[QC]) * sizeof(float)); /* states, and the zero padding */
    for (int t = 0; t < f; t++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < J; j++) xa[((size_t)t * B + b) * J + j] = win[(((size_t)b * f + t) * J + j) * 3 + a];

    /* Encoder, layer by layer: the input products of all frames in one pass over W_ih, then the
       recurrence (no product at frame 0, where h is zero). */
    const float *in = xa, *top = NULL;
    int ldin = J, kin = J;
    for (int k = 0; k < L; k++) {
        float *hs = seq[k & 1], *ck = c + (size_t)k * B * Hp;
        gemm(&ax->enc_ih[k], f * B, kin, in, ldin, pre, G, G, ax->enc_ih[k].bias, 0);
        for (int t = 0; t < f; t++)
            lstm(&ax->enc_hh[k], B, t ? Hp : 0, hs + (size_t)(t ? t - 1 : 0) * B * Hp, Hp, pre + (size_t)t * B * G, G,
                 ck, Hp, hs + (size_t)t * B * Hp, Hp);
        for (int b = 0; b < B; b++) { /* the decoder layer starts from this layer's final state (c: in place) */
            float *dst = k == 0 ? X0b + (size_t)b * K0 : X1b + ((size_t)(k - 1) * 2 * B + b) * K1 + Hp;
            memcpy(dst, hs + ((size_t)(f - 1) * B + b) * Hp, Hp * sizeof(float));
        }
        in = top = hs;
        ldin = kin = Hp;
    }
    gemm(&ax->mem, f * B, Hp, top, Hp, keys, Hp, Hp, NULL, 0);

    /* Decoder: input buffers alternate between steps (cur is read, nx is filled for the next step). */
    for (int t = 0; t < f; t++) {
        int cur = t & 1, nx = cur ^ 1;
        float *x0c = X0b + (size_t)cur * B * K0, *x0n = X0b + (size_t)nx * B * K0;
        for (int k = 0; k < L; k++) {
            float *xk = k == 0 ? x0c : X1b + ((size_t)(k - 1) * 2 + cur) * B * K1;
            /* step 0 reads zeros for the attentional vector and the frame: only h's rows */
            int K = k == 0 ? (t ? K0 : Hp) : K1;
            float *h = k == L - 1 ? qc : X1b + ((size_t)k * 2 + cur) * B * K1;
            lstm(&ax->dec[k], B, K, xk, k == 0 ? K0 : K1, ax->dec[k].bias, 0, c + (size_t)k * B * Hp, Hp, h, K1);
            for (int b = 0; b < B; b++) {
                float *dst = k == 0 ? x0n + (size_t)b * K0 : X1b + (((size_t)(k - 1) * 2 + nx) * B + b) * K1 + Hp;
                memcpy(dst, h + (size_t)b * K1, Hp * sizeof(float));
            }
        }
        /* Luong attention of the top-layer output over the encoder outputs; the context is the AGE */
        for (int b = 0; b < B; b++) {
            const float *q = qc + (size_t)b * K1;
            float mx = -INFINITY, sum = 0.0f;
            for (int u = 0; u < f; u++) {
                const float *kk = keys + ((size_t)u * B + b) * Hp;
                vf d = splat(0.0f);
                for (int j = 0; j < Hp; j += VW) d += ldf(kk + j) * ldf(q + j);
                float v = 0.0f;
                for (int i = 0; i < VW; i++) v += d[i];
                sc[u] = v;
                mx = v > mx ? v : mx;
            }
            for (int u = 0; u < f; u++) sum += (sc[u] = expf(sc[u] - mx));
            for (int u = 0; u < f; u++) sc[u] /= sum;
            float *ctx = qc + (size_t)b * K1 + Hp;
            for (int j = 0; j < Hp; j += VW) {
                vf acc = splat(0.0f);
                for (int u = 0; u < f; u++) acc += splat(sc[u]) * ldf(top + ((size_t)u * B + b) * Hp + j);
                stf(ctx + j, acc);
            }
            memcpy(out + ((size_t)b * f + t) * 3 * H + (size_t)a * H, ctx, H * sizeof(float));
        }
        if (t == f - 1) break;
        gemm(&ax->attn, B, K1, qc, K1, x0n + Hp, K0, Hp, NULL, 0); /* attentional vector W_c [q; c], fed back */
        if (n->teacher) /* free running: the next step reads this step's reconstruction */
            gemm(&ax->outm, B, Hp, x0n + Hp, K0, x0n + 2 * Hp, K0, n->Jp, ax->outm.bias, 0);
    }
}

/* windows [B][f][J][3] -> frame-level AGEs [B][f][3H]; ws: sb_workspace_floats(n, B) floats, 64-byte aligned. */
int sb_forward(const Net *n, int B, const float *windows, float *out, float *ws) {
    if (n->L < 1 || n->L > MAXL || n->Hp % VW || n->Jp % VW || B < 1 || n->n_axes != 3) return -1;
    size_t s[NBUF], o = 0;
    sizes(n, B, s);
    for (int i = 0; i < QX; i++) o += s[i];
    qx = (qx_t *)(ws + o);
    qsx = ws + o + s[QX];
    for (int a = 0; a < n->n_axes; a++) axis_forward(n, &n->axis[a], a, B, windows, out, ws);
    return 0;
}
"""


class _Mat(ctypes.Structure):
    _fields_ = [("w", ctypes.c_void_p), ("bias", ctypes.c_void_p), ("scale", ctypes.c_void_p), ("wsum", ctypes.c_void_p),
                ("type", ctypes.c_int32), ("K", ctypes.c_int32), ("np", ctypes.c_int32), ("pad", ctypes.c_int32)]


class _Axis(ctypes.Structure):
    _fields_ = [("enc_ih", _Mat * MAX_LAYERS), ("enc_hh", _Mat * MAX_LAYERS), ("dec", _Mat * MAX_LAYERS),
                ("mem", _Mat), ("attn", _Mat), ("outm", _Mat)]


class _Net(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in ("L", "f", "J", "H", "Hp", "Jp", "teacher", "n_axes")] + [
        ("axis", _Axis * len(AXES))]


def _cache_dir() -> Path | None:
    """The per-user kernel cache, or None where it cannot be private (the caller compiles afresh)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    folder = root / "gaitcam" / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError:
        return None
    # a shared library is code: load it only from a folder nobody else can write to
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
        return None
    return folder


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def _machine_key(cc: str, flags: tuple[str, ...]) -> str:
    """What the compiled library depends on: source, compiler (path, size, date), flags and CPU."""
    h = hashlib.sha256(SOURCE.encode())
    real = os.path.realpath(cc)
    st = os.stat(real)
    h.update(f"{real}|{st.st_size}|{st.st_mtime_ns}|{' '.join(flags)}|{platform.machine()}".encode())
    try:
        cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        h.update("\n".join(line for line in cpu.splitlines() if line.startswith(("model name", "flags"))).encode())
    except OSError:
        h.update(platform.processor().encode())
    return h.hexdigest()[:20]


def compile_kernel(extra_flags: tuple[str, ...] = (), folder: Path | None = None) -> Path:
    """The kernel library compiled for this machine, in `folder` (by default the per-user cache,
    where an earlier compilation is reused). Raises RuntimeError without a compiler, or when
    compilation fails (e.g. a CPU without AVX2)."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC, or install cc)")
    flags = FLAGS + tuple(extra_flags)
    folder = folder or _cache_dir()
    if folder is None:
        raise RuntimeError("no private cache folder for the compiled kernel")
    target = folder / f"sgela-small-batch-{ABI}-{_machine_key(cc, flags)}.so"
    if target.exists():
        return target
    log.info("compiling the small-batch encoder kernel with %s (once per machine) ...", cc)
    with tempfile.TemporaryDirectory(prefix="gaitcam-kernel-") as tmp:
        src = Path(tmp) / "small_batch.c"
        src.write_text(SOURCE)
        fd, partial = tempfile.mkstemp(dir=folder, suffix=".so.partial")
        os.close(fd)
        try:
            done = subprocess.run([cc, *flags, "-o", partial, str(src), "-lm"], capture_output=True, text=True,
                                  timeout=300)
            if done.returncode:
                raise RuntimeError(f"{Path(cc).name} failed: {done.stderr.strip()[-500:]}")
            os.replace(partial, target)  # atomic: another process may be compiling the same
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


_loaded: dict[tuple[str, ...], ctypes.CDLL | None] = {}
_load_lock = threading.Lock()


def kernel_library(extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The kernel library for this machine (compiled once per machine, loaded once per process), or
    None when it cannot be built here: the reason is logged once."""
    with _load_lock:
        if extra_flags not in _loaded:
            try:
                if _cache_dir() is not None:
                    _loaded[extra_flags] = _load(compile_kernel(extra_flags))
                else:  # compiled for this process only; the loaded library outlives its file
                    with tempfile.TemporaryDirectory(prefix="gaitcam-kernel-") as tmp:
                        _loaded[extra_flags] = _load(compile_kernel(extra_flags, Path(tmp)))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                if extra_flags:  # a variant (tests, `bench kernels`): the app's own build is not affected
                    log.warning("the small-batch kernel does not build with %s (%s)", " ".join(extra_flags), e)
                else:
                    log.warning("no small-batch encoder kernel (%s); small batches run on onnxruntime", e)
                _loaded[extra_flags] = None
        return _loaded[extra_flags]


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.sb_abi() != ABI or lib.sb_sizeof_net() != ctypes.sizeof(_Net):
        raise RuntimeError(f"{path} does not match this version of gaitcam")
    lib.sb_forward.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.sb_forward.restype = ctypes.c_int
    lib.sb_workspace_floats.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.sb_workspace_floats.restype = ctypes.c_size_t
    lib.sb_int8.restype = ctypes.c_int
    return lib


def _aligned(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Zeros whose data start on a 64-byte boundary (a cache line)."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(n + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + n].view(dtype).reshape(shape)


def quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [K, N] as int8 per column, symmetric (w ~ q * scale, scale = max |w| / 127), and the
    scales [N]; an all-zero column gets scale 1."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


class SmallBatchAGE:
    """Windows [B, f, J, 3] -> frame-level AGEs [B, f, 3H], equal to `SGELA.age(windows)` within
    fast.TOLERANCE, on the calling thread. Raises RuntimeError where the kernel cannot be built.

    The weights are copied (packed) here: build a new one after changing the model. Calls from
    several threads at once are safe (each thread has its own buffers).
    """

    def __init__(self, model: SGELA, library: ctypes.CDLL | None = None, precision: str = "float32") -> None:
        lib = library or kernel_library()
        if lib is None:
            raise RuntimeError("the small-batch kernel cannot be built here")
        if precision not in KERNEL_PRECISIONS:
            raise ValueError(f"precision must be one of {KERNEL_PRECISIONS}, not {precision!r}")
        self.int8 = INT8_KINDS.get(lib.sb_int8())  # the instructions this build's int8 products use
        if precision == "int8" and self.int8 is None:
            raise RuntimeError("this build of the kernel has no int8 products (AVX-512 without BW)")
        self.precision = precision
        cfg = model.cfg
        if cfg.layers > MAX_LAYERS:
            raise RuntimeError(f"the small-batch kernel runs at most {MAX_LAYERS} layers, not {cfg.layers}")
        self.lib, self.cfg = lib, cfg
        self.vector = vw = lib.sb_vector_width()
        h, j = cfg.hidden, cfg.n_joints
        hp, jp = -(-h // vw) * vw, -(-j // vw) * vw
        teacher = cfg.decoder_input == "teacher"  # eval runs the decoder free: it reads its reconstruction
        self._arrays: list[np.ndarray] = []  # the packed weights the C structure points into
        self._float16 = []
        net = _Net(L=cfg.layers, f=cfg.f, J=j, H=h, Hp=hp, Jp=jp, teacher=int(teacher), n_axes=len(AXES))
        for a, axis in enumerate(model.axes):
            w = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in axis.state_dict().items()}
            out = net.axis[a]
            for k in range(cfg.layers):
                out.enc_ih[k] = self._pack([(w[f"encoder.weight_ih_l{k}"], j if k == 0 else hp)], h,
                                           w[f"encoder.bias_ih_l{k}"] + w[f"encoder.bias_hh_l{k}"])
                out.enc_hh[k] = self._pack([(w[f"encoder.weight_hh_l{k}"], hp)], h)
                ih, hh = w[f"decoder.{k}.weight_ih"], w[f"decoder.{k}.weight_hh"]
                bias = w[f"decoder.{k}.bias_ih"] + w[f"decoder.{k}.bias_hh"]
                if k == 0:  # inputs [h0 | attentional vector | frame]; the model's are [frame | attentional]
                    parts = [(hh, hp), (ih[:, j:], hp)] + ([(ih[:, :j], jp)] if teacher else [])
                else:  # [h(k-1) | h(k)]
                    parts = [(ih, hp), (hh, hp)]
                out.dec[k] = self._pack(parts, h, bias)
            out.mem = self._pack([(w["memory_layer.weight"], hp)])
            wc = w["attention_layer.weight"]
            out.attn = self._pack([(wc[:, :h], hp), (wc[:, h:], hp)])
            if teacher:
                out.outm = self._pack([(w["output_layer.weight"], hp)], bias=w["output_layer.bias"])
        self._net = net
        self._local = threading.local()
        n16 = sum(self._float16)
        self.weights = "int8" if precision == "int8" else "float16" if n16 == len(self._float16) else \
            "float32" if not n16 else "mixed"

    def _pack(self, parts: list[tuple[np.ndarray, int]], lstm_units: int | None = None,
              bias: np.ndarray | None = None) -> _Mat:
        """W [N, K] as panels [N / PW][K][PW] (PW: 4 vectors), the K segments given in `parts` as
        (W_part, padded width), padding zero. LSTM weights (`lstm_units` = H, N = 4H in PyTorch's
        gate order i, f, g, o) go per VW units with their four gates side by side."""
        pw, vw = 4 * self.vector, self.vector
        n = parts[0][0].shape[0]
        k_total = sum(width for _, width in parts)
        if lstm_units:
            rows = np.arange(n)
            gate, unit = rows // lstm_units, rows % lstm_units
            columns = (unit // vw) * pw + gate * vw + unit % vw
            panels = -(-lstm_units // vw)
        else:
            columns = np.arange(n)
            panels = -(-n // pw)
        dense = np.zeros((k_total, panels * pw), np.float32)
        k0 = 0
        for part, width in parts:
            dense[k0 : k0 + part.shape[1], columns] = part.T
            k0 += width
        if self.precision == "int8":
            mat = self._pack_int8(dense, panels)
        else:
            half = bool(np.isfinite(dense).all()) and np.array_equal(dense.astype(np.float16).astype(np.float32), dense)
            packed = _aligned((panels, k_total, pw), np.float16 if half else np.float32)
            packed[...] = dense.reshape(k_total, panels, pw).transpose(1, 0, 2)
            self._arrays.append(packed)
            self._float16.append(half)
            mat = _Mat(w=packed.ctypes.data, type=W_F16 if half else W_F32, K=k_total, np=panels)
        if bias is not None:
            b = _aligned((panels * pw,), np.float32)
            b[columns] = bias
            self._arrays.append(b)
            mat.bias = b.ctypes.data
        return mat

    def _pack_int8(self, dense: np.ndarray, panels: int) -> _Mat:
        """W [K, panels * PW] as int8 per column (`quantize_columns`), packed [panels][KG][PW][G]:
        G consecutive rows of a column side by side in 32 bits, as the build's product instruction
        reads them (G = 4 for VPDPBUSD's bytes, 2 for VPMADDWD's 16-bit pairs)."""
        pw, g = 4 * self.vector, ROWS_PER_LANE[self.int8]
        q, scale = quantize_columns(dense)
        kg = -(-len(q) // g)
        padded = np.zeros((g * kg, q.shape[1]), np.int8)
        padded[: len(q)] = q
        packed = _aligned((panels, kg, pw, g), np.int8)
        packed[...] = padded.reshape(kg, g, panels, pw).transpose(2, 0, 3, 1)
        scales, sums = _aligned((q.shape[1],), np.float32), _aligned((q.shape[1],), np.int32)
        scales[:], sums[:] = scale, q.astype(np.int32).sum(axis=0)
        self._arrays += [packed, scales, sums]
        self._float16.append(False)
        return _Mat(w=packed.ctypes.data, scale=scales.ctypes.data, wsum=sums.ctypes.data, type=W_Q8, K=len(q), np=panels)

    def _workspace(self, batch: int) -> np.ndarray:
        ws = getattr(self._local, "workspace", None)
        if ws is None or self._local.batch < batch:
            ws = _aligned((self.lib.sb_workspace_floats(ctypes.byref(self._net), batch),), np.float32)
            self._local.workspace, self._local.batch = ws, batch
        return ws

    def __call__(self, windows: torch.Tensor | np.ndarray) -> torch.Tensor:
        cfg = self.cfg
        x = windows.detach().to("cpu", torch.float32) if torch.is_tensor(windows) else torch.from_numpy(
            np.asarray(windows, dtype=np.float32))
        if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.f, cfg.n_joints, len(AXES)):
            raise ValueError(f"expected windows [B, {cfg.f}, {cfg.n_joints}, 3], got {list(x.shape)}")
        x = x.contiguous()
        out = torch.empty(len(x), cfg.f, cfg.age_dim)
        for i in range(0, len(x), CHUNK):
            b = min(CHUNK, len(x) - i)
            rc = self.lib.sb_forward(ctypes.byref(self._net), b, x[i].data_ptr(), out[i].data_ptr(),
                                     self._workspace(b).ctypes.data)
            if rc:
                raise RuntimeError(f"the small-batch kernel refused its input ({rc})")
        return out
