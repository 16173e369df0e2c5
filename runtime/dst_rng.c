/* dst_rng.c: deterministic random numbers for initialization and dropout.
 *
 * The generator is xoshiro256** (Blackman and Vigna's published algorithm),
 * seeded by expanding the seed with splitmix64, which also guarantees the
 * state is never all zero. The state is four uint64 in a plain struct, so a
 * checkpoint stores it as bytes and resumes the identical stream.
 *
 * Determinism: integer and uniform outputs depend on the state only. The
 * normal values go through log, sqrt, cos and sin in double precision and
 * are then rounded to float, so they agree across machines as long as the
 * C library's double functions are within half a float ulp (true of glibc
 * and any libm worth using).
 */
#include <math.h>

#include "dst.h"

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* One step of splitmix64: advances *x and returns a well-mixed value. */
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

void dst_rng_seed(DstRng *rng, uint64_t seed) {
  uint64_t x = seed;
  /* Four consecutive splitmix outputs are distinct (it is a bijection of
   * its counter), so at most one is zero and the state is not all zero. */
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

void dst_rng_seed_stream(DstRng *rng, uint64_t seed, uint64_t stream) {
  /* Mix the stream number first so that nearby (seed, stream) pairs land
   * far apart in splitmix's counter space. */
  uint64_t y = stream ^ UINT64_C(0x5851f42d4c957f2d);
  uint64_t x = seed ^ splitmix64(&y);
  x ^= splitmix64(&x);
  dst_rng_seed(rng, x);
}

uint64_t dst_rng_u64(DstRng *rng) {
  uint64_t *s = rng->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

float dst_rng_uniform(DstRng *rng) {
  /* 24 high bits: every value is exactly representable, and < 1. */
  return (float)(dst_rng_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

/* Two independent standard normals from two draws (Box-Muller). */
static void normal_pair(DstRng *rng, double *z0, double *z1) {
  const double two_pi = 6.283185307179586476925286766559;
  /* u1 in (0, 1] so log(u1) is finite; u2 in [0, 1). */
  double u1 = (double)((dst_rng_u64(rng) >> 11) + 1) * 0x1p-53;
  double u2 = (double)(dst_rng_u64(rng) >> 11) * 0x1p-53;
  double r = sqrt(-2.0 * log(u1));
  *z0 = r * cos(two_pi * u2);
  *z1 = r * sin(two_pi * u2);
}

float dst_rng_normal(DstRng *rng) {
  double z0, z1;
  normal_pair(rng, &z0, &z1);
  return (float)z0;
}

void dst_init_normal(float *x, size_t n, float mean, float std, DstRng *rng) {
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    double z0, z1;
    normal_pair(rng, &z0, &z1);
    x[i] = (float)(mean + std * z0);
    x[i + 1] = (float)(mean + std * z1);
  }
  if (i < n) {
    double z0, z1;
    normal_pair(rng, &z0, &z1);
    x[i] = (float)(mean + std * z0);
  }
}

void dst_init_uniform(float *x, size_t n, float lo, float hi, DstRng *rng) {
  for (size_t i = 0; i < n; i++) {
    float v = lo + (hi - lo) * dst_rng_uniform(rng);
    x[i] = v < hi ? v : nextafterf(hi, lo); /* rounding can reach hi; keep it open */
  }
}

void dst_init_const(float *x, size_t n, float value) {
  for (size_t i = 0; i < n; i++) x[i] = value;
}
