/*
 * torch.max(x, dim) on the CPU for a contiguous x viewed as [outer][n][inner]: the maximum
 * over the middle axis and its first index (a NaN is the maximum, the first one), in one pass,
 * vectorised across the contiguous inner axis.
 *
 * Why: torch.max with indices reduces a middle axis one element at a time, about 20x slower
 * than amax, which vectorises across the inner axis; QAConv's visibility weighting needs the
 * indices of its correlation blocks' maxima ([p, hw, hw, g], g = 64 galleries innermost).
 *
 * Accumulators: for each outer index, a block of ACC_VECS vectors of the inner axis at a
 * time is held in registers while the n rows stream by (one load, one compare and two blends
 * a vector); the rest of the inner axis (under LANES values) is done one value at a time.
 *
 * Built by mmoaml/ops/native.py, like aligned_pairs.c.
 */
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define LANES 16
#else
#define LANES 8
#endif
#define ACC_VECS 4 /* inner vectors per pass: 4 values, 4 indices and a row in registers */

typedef float vec __attribute__((vector_size(LANES * 4)));
typedef int32_t ivec __attribute__((vector_size(LANES * 4)));
typedef uint16_t hvec __attribute__((vector_size(LANES * 2)));

/* LANES values at p as float32: float32 as it is, bfloat16 widened (exact). */
static inline vec load(const void *p, int bf16) {
  if (!bf16) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
  }
  hvec h;
  memcpy(&h, p, sizeof h);
  return (vec)(__builtin_convertvector(h, ivec) << 16);
}

static inline float load_one(const void *p, int bf16) {
  if (!bf16) return *(const float *)p;
  uint32_t bits = (uint32_t)*(const uint16_t *)p << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Whether x replaces best: larger, or the first NaN (torch.max keeps the first maximum). */
static inline ivec wins(vec x, vec b) { return (x > b) | ((x != x) & (b == b)); }

static inline ivec pick(ivec mask, ivec yes, ivec no) { return (yes & mask) | (no & ~mask); }

/*
 * x: [outer][n][inner], float32 (bf16 == 0) or bfloat16 (bf16 != 0), contiguous; values:
 * float32 [outer][inner]; indices: int64 [outer][inner].
 */
void mmoaml_axis_first_maxima(const void *x, int bf16, int64_t outer, int64_t n, int64_t inner,
                              float *values, int64_t *indices) {
  const int64_t size = bf16 ? 2 : 4, full = inner / LANES * LANES;
  for (int64_t o = 0; o < outer; ++o) {
    const char *base = (const char *)x + o * n * inner * size;
    float *best_out = values + o * inner;
    int64_t *at_out = indices + o * inner;
    for (int64_t i0 = 0; i0 < full; i0 += ACC_VECS * LANES) {
      const int vecs = (int)((full - i0) / LANES < ACC_VECS ? (full - i0) / LANES : ACC_VECS);
      vec best[ACC_VECS];
      ivec at[ACC_VECS];
      for (int j = 0; j < ACC_VECS; ++j) {
        best[j] = j < vecs ? load(base + (i0 + j * LANES) * size, bf16) : (vec){0};
        at[j] = (ivec){0};
      }
      for (int64_t k = 1; k < n; ++k) {
        const char *row = base + (k * inner + i0) * size;
        const ivec here = (ivec){0} + (int32_t)k;
        for (int j = 0; j < ACC_VECS; ++j) {
          if (j >= vecs) break;
          vec v = load(row + j * LANES * size, bf16);
          ivec w = wins(v, best[j]);
          best[j] = (vec)pick(w, (ivec)v, (ivec)best[j]);
          at[j] = pick(w, here, at[j]);
        }
      }
      for (int j = 0; j < vecs; ++j) {
        float b[LANES];
        int32_t a[LANES];
        memcpy(b, &best[j], sizeof b);
        memcpy(a, &at[j], sizeof a);
        for (int l = 0; l < LANES; ++l) {
          best_out[i0 + j * LANES + l] = b[l];
          at_out[i0 + j * LANES + l] = a[l];
        }
      }
    }
    for (int64_t i = full; i < inner; ++i) { /* the last values of the inner axis */
      float b = load_one(base + i * size, bf16);
      int64_t a = 0;
      for (int64_t k = 1; k < n; ++k) {
        float v = load_one(base + (k * inner + i) * size, bf16);
        if (v > b || (v != v && b == b)) {
          b = v;
          a = k;
        }
      }
      best_out[i] = b;
      at_out[i] = a;
    }
  }
}
