/*
 * QAConv correlations of aligned pairs and their maxima, on the CPU.
 *
 * For pair k of n, with probe map P = probe[k] and gallery map G = gallery[k] (both [C][hw]
 * float32, channel-major: the layout of a contiguous [n, C, h, w] tensor):
 *
 *   S[r][s] = <P[:, r], G[:, s]> / max(|P[:, r]|, 1e-12) / max(|G[:, s]|, 1e-12),
 *
 * then S[r][s] = hidden_value wherever hidden_p[k][r] or hidden_g[k][s] (optional masks), and
 * out: max_p[k][r] = max_s S[r][s] with arg_p[k][r] the first s that reaches it, max_g[k][s] =
 * max_r S[r][s] with arg_g[k][s]; a NaN is the maximum, at its first position (torch.max).
 *
 * Why a kernel: a pair is a 49x512 by 512x49 product that shares no operand with any other
 * pair, so BLAS can only batch it (torch.bmm), and at this shape batched products run at about
 * 45 % of the machine's large-matrix rate. Here each pair's product runs in register tiles of
 * 7 probe x 48 gallery locations (21 accumulators of 16 lanes: one load per 7 multiply-adds),
 * the next pair's maps are prefetched meanwhile (each map is read once, from memory), and the
 * norms and maxima are taken while the 49x49 block is in cache.
 *
 * bf16 != 0: the maps are rounded to bfloat16 (to nearest even) and their products summed in
 * float32: AVX512-BF16 dot products where the compiler targets them, the same products
 * widened to float32 elsewhere. The norms stay float32, as in QAConvHead.
 *
 * Built by mmoaml/ops/native.py (cc -O3 -march=native -ffp-contract=fast: a product and its
 * sum are one fused multiply-add, rounded once). GCC/Clang vector extensions: 16 lanes (one
 * AVX-512 register) where the machine has AVX-512, else 8 (one AVX2 register, or two SSE or
 * NEON ones), with smaller register tiles (see TILE_ROWS).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

/* A register tile of TILE_ROWS probe x TILE_VECS * LANES gallery locations: as many
 * accumulators as leave room for the gallery vectors and a broadcast in 32 AVX-512 registers
 * (21 + 3 + 1), or in 16 registers of 8 lanes (AVX2: 12 + 3 + 1). */
#if defined(__AVX512F__)
#define LANES 16
#define TILE_ROWS 7 /* 49 = 7 x 7 */
#else
#define LANES 8
#define TILE_ROWS 4
#endif
#define TILE_VECS 3
#define TILE_COLS (TILE_VECS * LANES)
#define SPLIT 4 /* probe vectors per pass over a leftover column */
#define BLOCK_WORDS 32 /* words per pass over the tiles: their gallery vectors stay in L1 */
#define LINE 64 /* cache line bytes */

typedef float vec __attribute__((vector_size(LANES * 4)));
typedef int32_t ivec __attribute__((vector_size(LANES * 4)));
typedef uint32_t uvec __attribute__((vector_size(LANES * 4)));

static inline vec load(const float *p) {
  vec v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline float as_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline uint32_t as_bits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

/* x in every lane (x - 0 is x, -0 included; a broadcast once compiled). */
static inline vec splat(float x) { return x - (vec){0}; }

/* float32 -> bfloat16 bits, round to nearest even; a NaN stays a (quiet) NaN. */
static inline uint32_t bf16_bits(float f) {
  uint32_t b = as_bits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (b >> 16) | 0x40u;
  return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}

/*
 * Multiply-accumulate of one word a (broadcast) with the words b. float32: a word is one
 * channel's value. bfloat16: a word holds two channels' values (low half, high half), and
 * the accumulator gains the sum of both products.
 */
static inline vec mac_f32(vec acc, float a, vec b) { return acc + splat(a) * b; }

static inline vec mac_bf16(vec acc, float a, vec b) {
#if defined(__AVX512BF16__)
  return (vec)_mm512_dpbf16_ps((__m512)acc, (__m512bh)_mm512_set1_ps(a), (__m512bh)(__m512)b);
#else
  uint32_t w = as_bits(a);
  uvec u = (uvec)b;
  acc += splat(as_float(w << 16)) * (vec)(u << 16);
  return acc + splat(as_float(w & 0xffff0000u)) * (vec)(u & 0xffff0000u);
#endif
}

/* yes where mask (lanes of -1), no elsewhere */
static inline vec pick(ivec mask, vec yes, vec no) {
  return (vec)(((ivec)yes & mask) | ((ivec)no & ~mask));
}

static inline ivec pick_int(ivec mask, ivec yes, ivec no) { return (yes & mask) | (no & ~mask); }

/* Lane i holds i. */
static inline ivec iota(void) {
  ivec v;
  for (int i = 0; i < LANES; ++i) v[i] = i;
  return v;
}

/* Lane permutations for the reductions (a constant index vector each). */
#if defined(__clang__)
#define SWAP(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define SWAP(v, ...) __builtin_shuffle(v, (ivec){__VA_ARGS__})
#endif
#if LANES == 16
#define REDUCE(v, op)                                                                          \
  v = op(v, SWAP(v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));                    \
  v = op(v, SWAP(v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));                    \
  v = op(v, SWAP(v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));                    \
  v = op(v, SWAP(v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14))
#else
#define REDUCE(v, op)                                                                          \
  v = op(v, SWAP(v, 4, 5, 6, 7, 0, 1, 2, 3));                                                  \
  v = op(v, SWAP(v, 2, 3, 0, 1, 6, 7, 4, 5));                                                  \
  v = op(v, SWAP(v, 1, 0, 3, 2, 5, 4, 7, 6))
#endif

static inline vec vmax(vec a, vec b) { return pick(a > b, a, b); }
static inline ivec vmin(ivec a, ivec b) { return pick_int(a < b, a, b); }

/* The largest lane (no lane NaN) and the smallest lane. */
static inline float lane_max(vec v) {
  REDUCE(v, vmax);
  return v[0];
}

static inline int32_t lane_min(ivec v) {
  REDUCE(v, vmin);
  return v[0];
}

/* Memory to bring into cache, a line at a time, while the product runs. */
struct ahead {
  const char *at[2], *end[2];
};

static inline void prefetch_lines(struct ahead *a, int lines) {
  for (int i = 0; i < 2; ++i)
    for (; lines > 0 && a->at[i] < a->end[i]; --lines, a->at[i] += LINE)
      __builtin_prefetch(a->at[i], 0, 0);
}

/*
 * One pair's correlations S[r][s] (row stride ld) from words pk[k * ps + r] (probe) and
 * gk[k * gs + s] (gallery), k < words. Probe rows may be read as whole vectors up to location
 * vr (a multiple of LANES); locations vr..hw-1 of a leftover column are summed one at a time
 * (float32 maps, read in place, leave one at 7x7). `lines` lines of `next` are prefetched per
 * word of a tile. Generated for both word kinds.
 */
#define DEFINE_CORRELATION(name, mac)                                                          \
  static void name(const float *pk, const float *gk, int64_t words, int64_t hw, int64_t ps,   \
                   int64_t gs, int64_t vr, float *S, int64_t ld, struct ahead *next,          \
                   int lines) {                                                               \
    const int64_t cols = hw / TILE_COLS * TILE_COLS, rows = hw / TILE_ROWS * TILE_ROWS;       \
    for (int64_t s0 = 0; s0 < cols; s0 += TILE_COLS) {                                        \
      for (int64_t k0 = 0; k0 < words; k0 += BLOCK_WORDS) {                                   \
        const int64_t k1 = k0 + BLOCK_WORDS < words ? k0 + BLOCK_WORDS : words;               \
        for (int64_t r0 = 0; r0 < rows; r0 += TILE_ROWS) {                                    \
          vec acc[TILE_ROWS][TILE_VECS] = {{{0}}};                                            \
          for (int64_t k = k0; k < k1; ++k) {                                                 \
            const float *g = gk + k * gs + s0, *p = pk + k * ps + r0;                         \
            vec g0 = load(g), g1 = load(g + LANES), g2 = load(g + 2 * LANES);                 \
            for (int i = 0; i < TILE_ROWS; ++i) {                                             \
              acc[i][0] = mac(acc[i][0], p[i], g0);                                           \
              acc[i][1] = mac(acc[i][1], p[i], g1);                                           \
              acc[i][2] = mac(acc[i][2], p[i], g2);                                           \
            }                                                                                 \
            prefetch_lines(next, lines);                                                      \
          }                                                                                   \
          for (int i = 0; i < TILE_ROWS; ++i)                                                 \
            for (int j = 0; j < TILE_VECS; ++j) {                                             \
              float *out = S + (r0 + i) * ld + s0 + j * LANES;                                \
              vec sum = k0 ? load(out) + acc[i][j] : acc[i][j];                               \
              memcpy(out, &sum, sizeof(vec));                                                 \
            }                                                                                 \
        }                                                                                     \
      }                                                                                       \
      for (int64_t r = rows; r < hw; ++r) { /* leftover rows, one at a time */                \
        vec acc[TILE_VECS] = {{0}};                                                           \
        for (int64_t k = 0; k < words; ++k)                                                   \
          for (int j = 0; j < TILE_VECS; ++j)                                                 \
            acc[j] = mac(acc[j], pk[k * ps + r], load(gk + k * gs + s0 + j * LANES));         \
        for (int j = 0; j < TILE_VECS; ++j)                                                   \
          memcpy(S + r * ld + s0 + j * LANES, &acc[j], sizeof(vec));                          \
      }                                                                                       \
    }                                                                                         \
    /* leftover columns (one at 7x7): vectorised over the probe locations, up to SPLIT */    \
    /* vectors of them per pass, each with two partial sums (even and odd words) */           \
    for (int64_t s = cols; s < hw; ++s) {                                                     \
      for (int64_t r0 = 0; r0 < vr; r0 += SPLIT * LANES) {                                    \
        vec acc[2][SPLIT] = {{{0}}};                                                          \
        for (int64_t k = 0; k < words; ++k) {                                                 \
          const float *p = pk + k * ps + r0, b = gk[k * gs + s];                              \
          for (int j = 0; j < SPLIT && r0 + j * LANES < vr; ++j)                              \
            acc[k & 1][j] = mac(acc[k & 1][j], b, load(p + j * LANES));                       \
        }                                                                                     \
        for (int j = 0; j < SPLIT && r0 + j * LANES < vr; ++j) {                              \
          float out[LANES];                                                                   \
          vec sum = acc[0][j] + acc[1][j];                                                    \
          memcpy(out, &sum, sizeof out);                                                      \
          for (int64_t r = r0 + j * LANES; r < hw && r < r0 + (j + 1) * LANES; ++r)           \
            S[r * ld + s] = out[r - r0 - j * LANES];                                          \
        }                                                                                     \
      }                                                                                       \
      for (int64_t r = vr; r < hw; ++r) { /* four partial sums: independent additions */     \
        float sum[4] = {0};                                                                   \
        for (int64_t k = 0; k < words; ++k) sum[k & 3] += pk[k * ps + r] * gk[k * gs + s];    \
        S[r * ld + s] = (sum[0] + sum[1]) + (sum[2] + sum[3]);                                \
      }                                                                                       \
    }                                                                                         \
  }

DEFINE_CORRELATION(correlation_f32, mac_f32)
DEFINE_CORRELATION(correlation_bf16, mac_bf16)

/*
 * Sums of squares over the channels of x[C][hw], per location, into sq; with w, also the
 * bfloat16 words w[m * stride + r] of x: channel 2m in the low half of word m, 2m + 1 (or 0
 * past the last channel) in the high half (locations past hw are left alone). The locations
 * are read as whole vectors, the last one ending at hw (overlapping its predecessor: its words
 * are written twice, the same, and only its new lanes' sums are kept), and the sums of up to
 * PACK_VECS vectors stay in registers while the channels stream by.
 */
#define PACK_VECS 4
static void squares_and_words(const float *x, int64_t channels, int64_t hw, float *sq, float *w,
                              int64_t stride) {
  const int64_t step = w ? 2 : 1, full = hw / LANES * LANES;
  const int64_t starts = hw < LANES ? 0 : (hw + LANES - 1) / LANES;
  for (int64_t v0 = 0; v0 < starts; v0 += PACK_VECS) {
    vec acc[PACK_VECS] = {{0}};
    for (int64_t c = 0; c < channels; c += step) {
      const float *lo = x + c * hw, *hi = c + 1 < channels && w ? lo + hw : NULL;
      for (int j = 0; j < PACK_VECS && v0 + j < starts; ++j) {
        const int64_t r = (v0 + j + 1) * LANES <= hw ? (v0 + j) * LANES : hw - LANES;
        vec l = load(lo + r), h = hi ? load(hi + r) : (vec){0};
        acc[j] += l * l + h * h;
        if (!w) continue;
        float *out = w + c / 2 * stride + r;
#if defined(__AVX512BF16__)
        /* cvtne2ps gives [l 0..15, h 0..15]; the permutation interleaves them per location */
        const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
                                               25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                               18, 2, 17, 1, 16, 0);
        __m512i both = (__m512i)_mm512_cvtne2ps_pbh((__m512)h, (__m512)l);
        _mm512_storeu_si512(out, _mm512_permutexvar_epi16(order, both));
#else
        for (int i = 0; i < LANES; ++i) out[i] = as_float(bf16_bits(l[i]) | bf16_bits(h[i]) << 16);
#endif
      }
    }
    for (int j = 0; j < PACK_VECS && v0 + j < starts; ++j) {
      const int64_t r = (v0 + j + 1) * LANES <= hw ? (v0 + j) * LANES : hw - LANES;
      float sums[LANES];
      memcpy(sums, &acc[j], sizeof sums);
      for (int i = r < full ? 0 : (int)(full - r); i < LANES; ++i) sq[r + i] = sums[i];
    }
  }
  if (starts) return;
  for (int64_t r = 0; r < hw; ++r) { /* maps of fewer locations than a vector */
    float sum = 0.0f;
    for (int64_t c = 0; c < channels; c += step) {
      const float l = x[c * hw + r], h = c + 1 < channels && w ? x[(c + 1) * hw + r] : 0.0f;
      sum += l * l + h * h;
      if (w) w[c / 2 * stride + r] = as_float(bf16_bits(l) | bf16_bits(h) << 16);
    }
    sq[r] = sum;
  }
}

/* Maximum of v[0], v[step], ... (n values) and its first index; a NaN wins, the first one. */
static inline void first_max(const float *v, int64_t n, int64_t step, float *best, int64_t *at) {
  float b = v[0];
  int64_t a = 0;
  for (int64_t i = 1; i < n; ++i) {
    float x = v[i * step];
    if (x > b || (x != x && b == b)) {
      b = x;
      a = i;
    }
  }
  *best = b;
  *at = a;
}

/* first_max down every column of S (hw rows of stride ld, each readable up to a whole
 * vector past hw), up to COLUMN_VECS vectors of columns side by side (independent chains). */
#define COLUMN_VECS 4
static void column_maxima(const float *S, int64_t hw, int64_t ld, float *best, int64_t *at) {
  for (int64_t s0 = 0; s0 < hw; s0 += COLUMN_VECS * LANES) {
    vec b[COLUMN_VECS];
    ivec a[COLUMN_VECS] = {{0}};
    for (int j = 0; j < COLUMN_VECS; ++j) b[j] = load(S + s0 + j * LANES);
    for (int64_t r = 1; r < hw; ++r) {
      const ivec index = (ivec){0} + (int32_t)r;
      for (int j = 0; j < COLUMN_VECS; ++j) {
        vec x = load(S + r * ld + s0 + j * LANES);
        ivec wins = (x > b[j]) | ((x != x) & (b[j] == b[j]));
        b[j] = pick(wins, x, b[j]);
        a[j] = (a[j] & ~wins) | (index & wins);
      }
    }
    float bs[COLUMN_VECS * LANES];
    int32_t as[COLUMN_VECS * LANES];
    memcpy(bs, b, sizeof bs);
    memcpy(as, a, sizeof as);
    for (int64_t s = s0; s < hw && s < s0 + COLUMN_VECS * LANES; ++s) {
      best[s] = bs[s - s0];
      at[s] = as[s - s0];
    }
  }
}

/*
 * Normalise and exclude one row of S (row[s] for s < hw, padded with -inf to a whole vector):
 * row *= inv_r * inv_g[s], hidden_value where the row is hidden or hidden[s] (ivec lanes, -1 =
 * hidden; padding: lanes past hw). Its maximum and the first location that reaches it, unless
 * the row holds a NaN: then *nan is set (the caller rescans the rows).
 */
static void finish_row(float *row, int64_t hw, float inv_r, int row_hidden, const float *inv_g,
                       const ivec *hidden, const ivec *padding, float hidden_value, float *best,
                       int64_t *at, ivec *nan) {
  const vec fill = splat(hidden_value), minus_inf = splat(-INFINITY);
  vec top = minus_inf;
  for (int64_t j = 0; j * LANES < hw; ++j) {
    vec v = row_hidden ? fill
                       : pick(hidden[j], fill, load(row + j * LANES) * splat(inv_r) *
                                                   load(inv_g + j * LANES));
    v = pick(padding[j], minus_inf, v);
    memcpy(row + j * LANES, &v, sizeof v);
    *nan |= v != v;
    top = vmax(v, top);
  }
  /* the first location that reaches the maximum: the smallest index among equal lanes */
  const vec m = splat(lane_max(top));
  ivec first = (ivec){0} + INT32_MAX;
  for (int64_t j = 0; j * LANES < hw; ++j) {
    ivec here = pick_int(load(row + j * LANES) == m, iota() + (int32_t)(j * LANES), first);
    first = vmin(here, first);
  }
  *at = lane_min(first);
  *best = row[*at];
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/*
 * Pairs [0, n) of probe/gallery ([n][channels][hw] float32, contiguous); hidden_p/hidden_g:
 * [n][hw] bytes (nonzero = hidden) or NULL. Outputs [n][hw]. Returns 0, or -1 when the
 * scratch memory cannot be allocated.
 */
int mmoaml_aligned_pair_maxima(const float *probe, const float *gallery, int64_t n,
                               int64_t channels, int64_t hw, int bf16,
                               const uint8_t *hidden_p, const uint8_t *hidden_g,
                               float hidden_value, float *max_p, int64_t *arg_p, float *max_g,
                               int64_t *arg_g) {
  /* S's rows (and the bfloat16 words' rows) are padded to whole groups of column_maxima
   * vectors plus one vector, so that no row stride is a power of two (such strides crowd into
   * few cache sets). float32 maps are read in place. */
  const int64_t vecs = round_up(hw, LANES) / LANES;
  const int64_t ld = round_up(hw, COLUMN_VECS * LANES) + LANES;
  const int64_t words = bf16 ? (channels + 1) / 2 : channels;
  const int64_t floats = hw * ld + 2 * vecs * LANES + (bf16 ? 2 * words * ld : 0);
  const int64_t map_bytes = channels * hw * (int64_t)sizeof(float);
  float *scratch = aligned_alloc(64, (size_t)round_up(floats * (int64_t)sizeof(float), 64));
  ivec *masks = aligned_alloc(64, (size_t)(2 * vecs) * sizeof(ivec));
  if (!scratch || !masks) {
    free(scratch);
    free(masks);
    return -1;
  }
  memset(scratch, 0, (size_t)floats * sizeof(float));
  float *S = scratch, *inv_p = S + hw * ld, *inv_g = inv_p + vecs * LANES;
  float *pw = inv_g + vecs * LANES, *gw = pw + words * ld;
  ivec *hidden = masks, *padding = masks + vecs;
  for (int64_t j = 0; j < vecs; ++j)
    for (int i = 0; i < LANES; ++i) padding[j][i] = j * LANES + i >= hw ? -1 : 0;
  /* Lines of the next pair to prefetch per word of a register tile: all of them by the end. */
  const int64_t steps = (hw / TILE_COLS) * (hw / TILE_ROWS) * words;
  const int lines = steps ? (int)((2 * map_bytes / LINE + steps - 1) / steps) : 0;
  for (int64_t k = 0; k < n; ++k) {
    const float *P = probe + k * channels * hw, *G = gallery + k * channels * hw;
    const int64_t ahead_bytes = k + 1 < n ? map_bytes : 0;
    struct ahead next = {{(const char *)(P + channels * hw), (const char *)(G + channels * hw)},
                         {(const char *)(P + channels * hw) + ahead_bytes,
                          (const char *)(G + channels * hw) + ahead_bytes}};
    squares_and_words(P, channels, hw, inv_p, bf16 ? pw : NULL, ld);
    squares_and_words(G, channels, hw, inv_g, bf16 ? gw : NULL, ld);
    for (int64_t r = 0; r < hw; ++r) {
      inv_p[r] = 1.0f / fmaxf(sqrtf(inv_p[r]), 1e-12f);
      inv_g[r] = 1.0f / fmaxf(sqrtf(inv_g[r]), 1e-12f);
    }
    if (bf16)
      correlation_bf16(pw, gw, words, hw, ld, ld, vecs * LANES, S, ld, &next, lines);
    else
      correlation_f32(P, G, words, hw, hw, hw, hw / LANES * LANES, S, ld, &next, lines);
    for (int64_t j = 0; j < vecs; ++j)
      for (int i = 0; i < LANES; ++i) {
        const int64_t s = j * LANES + i;
        hidden[j][i] = hidden_g && s < hw && hidden_g[k * hw + s] ? -1 : 0;
      }
    ivec nan = {0};
    for (int64_t r = 0; r < hw; ++r)
      finish_row(S + r * ld, hw, inv_p[r], hidden_p && hidden_p[k * hw + r], inv_g, hidden,
                 padding, hidden_value, max_p + k * hw + r, arg_p + k * hw + r, &nan);
    int32_t lanes[LANES], any = 0;
    memcpy(lanes, &nan, sizeof lanes);
    for (int i = 0; i < LANES; ++i) any |= lanes[i];
    for (int64_t r = 0; any && r < hw; ++r) /* a NaN is the maximum, the first one */
      first_max(S + r * ld, hw, 1, max_p + k * hw + r, arg_p + k * hw + r);
    column_maxima(S, hw, ld, max_g + k * hw, arg_g + k * hw);
  }
  free(scratch);
  free(masks);
  return 0;
}
