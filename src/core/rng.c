/* rng.c -- xoshiro256** (Blackman & Vigna), seeded with splitmix64.
 * The whole state lives in the caller's duet_rng: no globals. */
#include "duet.h"
#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void duet_rng_seed(duet_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t duet_rng_u64(duet_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float duet_rng_uniform(duet_rng *r) {
    return (float)(duet_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float duet_rng_normal(duet_rng *r) {
    /* Box-Muller in double; u1 in (0, 1] so log() is finite. */
    double u1 = ((double)(duet_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(duet_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t duet_rng_below(duet_rng *r, uint64_t n) {
    /* Lemire-free simple rejection: reject the top partial bucket. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = duet_rng_u64(r); while (x >= limit);
    return x % n;
}

void duet_rng_shuffle(duet_rng *r, size_t *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)duet_rng_below(r, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
