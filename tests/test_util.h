/* test_util.h: helpers shared by the test programs: deterministic random fills (the same seed gives
 * the same numbers on every machine), error measures that treat any NaN or infinity as a failure,
 * and a NaN poison fill for outputs, so that an op that skips an element cannot pass. */
#ifndef VD_TEST_UTIL_H
#define VD_TEST_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: one 64-bit state word, good enough statistics for test data. */
static inline uint64_t test_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double test_rng_unit(uint64_t *state)
{
    return (double)(test_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* x[i] uniform in [lo, hi). */
static inline void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * test_rng_unit(&state));
}

/* x[i] normal with the given mean and standard deviation (Box-Muller). */
static inline void test_fill_normal(float *x, size_t n, uint64_t seed, float mean, float std)
{
    uint64_t state = seed;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - test_rng_unit(&state); /* in (0, 1]: log is finite */
        double u2 = test_rng_unit(&state);
        double radius = sqrt(-2.0 * log(u1));
        x[i] = (float)(mean + std * radius * cos(6.283185307179586 * u2));
        if (i + 1 < n) x[i + 1] = (float)(mean + std * radius * sin(6.283185307179586 * u2));
    }
}

/* Fills x with quiet NaNs. */
static inline void test_poison(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* ||got - want|| / ||want|| in double; ||got - want|| when want is all zeros. Any NaN or
 * infinity in either array gives INFINITY, so a comparison `err <= tol` fails. */
static inline double test_rel_error(const float *got, const float *want, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) return INFINITY;
        double d = (double)got[i] - want[i];
        diff += d * d;
        norm += (double)want[i] * want[i];
    }
    return norm > 0.0 ? sqrt(diff / norm) : sqrt(diff);
}

/* max |got - want|; INFINITY when either array holds a NaN or an infinity. */
static inline double test_max_abs_diff(const float *got, const float *want, size_t n)
{
    double largest = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) return INFINITY;
        double d = fabs((double)got[i] - want[i]);
        if (d > largest) largest = d;
    }
    return largest;
}

/* The seed of a randomised test run: VDMINI_TEST_SEED when set (to repeat a run), else the
 * clock, so that every run draws fresh inputs. */
static inline uint64_t test_seed(void)
{
    const char *env = getenv("VDMINI_TEST_SEED");
    if (env) return strtoull(env, NULL, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000007ull + (uint64_t)now.tv_nsec;
}

#endif
