/* Fuzz driver for the streaming frame decoder (no libFuzzer here: plain C, seeded PRNG,
 * run under ASan/UBSan from pytest).
 *
 *   fuzz_decoder N_RANDOM N_MUTATED [SEED]
 *
 * random:  frames of random bytes (random length up to 700, some with zeros inside) fed
 *          into one long-lived decoder; every accept is counted (expected 0).
 * mutated: a random valid message is encoded, then mutated (bit flips, byte overwrite,
 *          insert, delete, truncate, duplicate a run, inject a zero, COBS code byte edits);
 *          a frame the decoder accepts must re-encode to the original bytes, otherwise it
 *          is an "accepted corrupt frame". After each, a known good frame must decode
 *          (resynchronisation). Exit status 1 on any corrupt accept or resync failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evla_proto.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic across machines */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static uint32_t rndn(uint32_t n) { return (uint32_t)(rnd() % n); }
static float rndf(void) { return ((float)rndn(2000001) - 1000000.0f) * 1e-5f; }

static void random_msg(evla_msg_t *m)
{
    static const uint8_t types[] = {EVLA_PING, EVLA_WAYPOINTS, EVLA_HOLD, EVLA_ENABLE,
                                    EVLA_DISABLE, EVLA_LIMITS, EVLA_CONFIG, EVLA_GET_STATE,
                                    EVLA_PONG, EVLA_STATE, EVLA_ERROR};
    memset(m, 0, sizeof *m);
    m->type = types[rndn(sizeof types)];
    m->seq = (uint16_t)rnd();
    switch (m->type) {
    case EVLA_PING: m->u.ping.t_host_ns = rnd(); break;
    case EVLA_WAYPOINTS:
        m->u.waypoints.count = (uint8_t)(1 + rndn(EVLA_MAX_WAYPOINTS));
        for (unsigned i = 0; i < m->u.waypoints.count; i++) {
            m->u.waypoints.pts[i].t_us = rnd() >> rndn(64);
            for (int j = 0; j < EVLA_N_JOINTS; j++)
                m->u.waypoints.pts[i].pos[j] = rndf();
            m->u.waypoints.pts[i].flags = (uint8_t)rndn(8);
        }
        break;
    case EVLA_LIMITS:
        for (int j = 0; j < EVLA_N_JOINTS; j++) {
            float a = rndf(), b = rndf();
            m->u.limits.joint[j].min_rad = a < b ? a : b;
            m->u.limits.joint[j].max_rad = a < b ? b : a;
            m->u.limits.joint[j].max_vel_rad_s = 0.01f + (float)rndn(1000);
            m->u.limits.joint[j].max_acc_rad_s2 = 0.01f + (float)rndn(1000);
        }
        break;
    case EVLA_CONFIG:
        m->u.config.watchdog_ms = (uint16_t)rnd();
        m->u.config.state_period_ms = (uint16_t)rnd();
        break;
    case EVLA_PONG:
        m->u.pong.t_host_ns = rnd();
        m->u.pong.t_mcu_us = rnd();
        break;
    case EVLA_STATE:
        m->u.state.t_mcu_us = rnd();
        for (int j = 0; j < EVLA_N_JOINTS; j++) {
            m->u.state.measured[j] = rndf();
            m->u.state.commanded[j] = rndf();
        }
        m->u.state.queue_depth = (uint16_t)rnd();
        m->u.state.faults = (uint32_t)rnd();
        m->u.state.ticks = (uint32_t)rnd();
        m->u.state.mode = (uint8_t)rndn(3);
        break;
    case EVLA_ERROR:
        m->u.error.code = (uint8_t)rnd();
        m->u.error.detail = (uint32_t)rnd();
        break;
    default: break;
    }
}

static size_t mutate(uint8_t *b, size_t n, size_t cap)
{
    int rounds = 1 + (int)rndn(4);
    for (int r = 0; r < rounds; r++) {
        if (n == 0)
            break;
        switch (rndn(9)) {
        case 0: /* bit flips */
        case 1: {
            int k = 1 + (int)rndn(8);
            for (int i = 0; i < k; i++)
                b[rndn((uint32_t)n)] ^= (uint8_t)(1u << rndn(8));
            break;
        }
        case 2: b[rndn((uint32_t)n)] = (uint8_t)rnd(); break;
        case 3: /* insert */
            if (n < cap) {
                size_t p = rndn((uint32_t)n + 1);
                memmove(b + p + 1, b + p, n - p);
                b[p] = (uint8_t)rnd();
                n++;
            }
            break;
        case 4: { /* delete a run */
            size_t p = rndn((uint32_t)n), k = 1 + rndn(8);
            if (p + k > n)
                k = n - p;
            memmove(b + p, b + p + k, n - p - k);
            n -= k;
            break;
        }
        case 5: n = rndn((uint32_t)n); break; /* truncate */
        case 6: { /* duplicate a run */
            size_t p = rndn((uint32_t)n), k = 1 + rndn(32);
            if (p + k > n)
                k = n - p;
            if (n + k <= cap) {
                memmove(b + p + 2 * k, b + p + k, n - p - k);
                memcpy(b + p + k, b + p, k);
                n += k;
            }
            break;
        }
        case 7: b[rndn((uint32_t)n)] = 0; break; /* stray delimiter: splits the frame */
        default: b[0] = (uint8_t)(1 + rndn(255)); break; /* first COBS code byte */
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s N_RANDOM N_MUTATED [SEED]\n", argv[0]);
        return 2;
    }
    unsigned long n_random = strtoul(argv[1], NULL, 10);
    unsigned long n_mutated = strtoul(argv[2], NULL, 10);
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 0x5eed1234abcdULL;
    if (rng_state == 0)
        rng_state = 1;

    static evla_stream_t s;
    evla_stream_init(&s);
    static evla_msg_t m, orig, probe_msg;
    static uint8_t buf[1024], wire[EVLA_MAX_WIRE], probe[EVLA_MAX_WIRE], re[EVLA_MAX_WIRE];
    unsigned long accepted_random = 0, accepted_corrupt = 0, accepted_intact = 0;
    unsigned long resync_fail = 0, bytes_fed = 0, mutated_identical = 0;

    probe_msg.type = EVLA_PING;
    probe_msg.seq = 4242;
    probe_msg.u.ping.t_host_ns = 0x1122334455667788ULL;
    size_t probe_n = evla_encode_frame(&probe_msg, probe, sizeof probe);

    for (unsigned long i = 0; i < n_random; i++) {
        size_t n = 1 + rndn(700);
        int zeros = rndn(2) == 0;
        for (size_t k = 0; k < n; k++) {
            uint8_t v = (uint8_t)rnd();
            if (!zeros && v == 0)
                v = 1;
            buf[k] = v;
        }
        buf[n++] = 0;
        for (size_t k = 0; k < n; k++) {
            int got = 0;
            evla_stream_push(&s, buf[k], &m, &got);
            if (got)
                accepted_random++;
        }
        bytes_fed += n;
    }

    for (unsigned long i = 0; i < n_mutated; i++) {
        random_msg(&orig);
        size_t wn = evla_encode_frame(&orig, wire, sizeof wire);
        if (wn == 0) {
            fprintf(stderr, "encoder refused a valid message of type %u\n", orig.type);
            return 1;
        }
        memcpy(buf, wire, wn - 1); /* mutate the body, not the final delimiter */
        size_t n = mutate(buf, wn - 1, sizeof buf - 1);
        int identical = (n == wn - 1 && memcmp(buf, wire, n) == 0);
        mutated_identical += (unsigned long)identical;
        buf[n++] = 0;
        for (size_t k = 0; k < n; k++) {
            int got = 0;
            evla_stream_push(&s, buf[k], &m, &got);
            if (!got)
                continue;
            size_t rn = evla_encode_frame(&m, re, sizeof re);
            if (rn == wn && memcmp(re, wire, wn) == 0)
                accepted_intact++; /* e.g. the mutation hit bytes after a stray delimiter */
            else {
                accepted_corrupt++;
                fprintf(stderr, "ACCEPTED CORRUPT FRAME at iteration %lu (type %u)\n", i, m.type);
            }
        }
        bytes_fed += n;
        /* resynchronisation: the very next good frame must come through */
        int ok = 0;
        for (size_t k = 0; k < probe_n; k++) {
            int got = 0;
            evla_stream_push(&s, probe[k], &m, &got);
            if (got && m.type == EVLA_PING && m.u.ping.t_host_ns == probe_msg.u.ping.t_host_ns)
                ok = 1;
        }
        bytes_fed += probe_n;
        resync_fail += (unsigned long)!ok;
    }

    printf("fuzz: random=%lu mutated=%lu bytes=%lu accepted_random=%lu accepted_intact=%lu "
           "mutated_identical=%lu accepted_corrupt=%lu resync_fail=%lu frames=%lu errors=%lu\n",
           n_random, n_mutated, bytes_fed, accepted_random, accepted_intact, mutated_identical,
           accepted_corrupt, resync_fail, (unsigned long)s.frames,
           (unsigned long)evla_stream_error_total(&s));
    for (int k = 1; k < EVLA_ERR__COUNT; k++)
        printf("  %s=%lu\n", evla_result_name((evla_result_t)k), (unsigned long)s.errors[k]);
    return (accepted_corrupt || resync_fail) ? 1 : 0;
}
