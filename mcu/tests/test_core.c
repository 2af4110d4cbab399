/* Unit tests of the firmware core that are easier to state in C than through the link:
 * queue ordering, late/duplicate/overflow accounting, limiter bounds, Feetech codec. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "evla_feetech.h"
#include "evla_motion.h"
#include "evla_proto.h"

static int failures, checks;
#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

static evla_waypoint_t wp(uint64_t t, float p, uint8_t flags)
{
    evla_waypoint_t w;
    w.t_us = t;
    for (int j = 0; j < EVLA_N_JOINTS; j++)
        w.pos[j] = p;
    w.flags = flags;
    return w;
}

static void test_queue(void)
{
    static evla_motion_t m;
    evla_joint_limits_t lim[EVLA_N_JOINTS];
    evla_motion_default_limits(lim);
    evla_motion_init(&m, lim);
    float zero[EVLA_N_JOINTS] = {0};
    evla_motion_reset(&m, zero, 1000);
    const uint64_t order[] = {5000, 3000, 9000, 4000, 7000};
    for (unsigned i = 0; i < 5; i++) {
        evla_waypoint_t w = wp(order[i], (float)i, 0);
        CHECK(evla_motion_push(&m, &w, 1000) == EVLA_WP_ADDED, "push %u", i);
    }
    evla_waypoint_t dup = wp(4000, 9.0f, 0), late = wp(1000, 0.0f, 0), old = wp(10, 0.0f, 0);
    CHECK(evla_motion_push(&m, &dup, 1000) == EVLA_WP_DUPLICATE, "duplicate");
    CHECK(evla_motion_push(&m, &late, 1000) == EVLA_WP_LATE, "late at now");
    CHECK(evla_motion_push(&m, &old, 1000) == EVLA_WP_LATE, "late in the past");
    CHECK(m.count == 5 && m.duplicates == 1 && m.late == 2, "counts %u %u %u", m.count,
          m.duplicates, m.late);
    uint64_t prev = 0;
    for (uint16_t i = 0; i < m.count; i++) {
        const evla_waypoint_t *w = &m.q[(m.head + i) % EVLA_QUEUE_CAP];
        CHECK(w->t_us > prev, "sorted at %u", i);
        prev = w->t_us;
        if (w->t_us == 4000)
            CHECK(w->pos[0] == 9.0f, "duplicate replaced the queued point");
    }
    /* overflow */
    evla_motion_reset(&m, zero, 0);
    int full = 0;
    for (unsigned i = 0; i < EVLA_QUEUE_CAP + 10; i++) {
        evla_waypoint_t w = wp(1000u * (i + 1), 0.0f, 0);
        if (evla_motion_push(&m, &w, 0) == EVLA_WP_FULL)
            full++;
    }
    CHECK(full == 10 && m.count == EVLA_QUEUE_CAP, "overflow %d count %u", full, m.count);
    /* RESET flag replaces the plan */
    evla_waypoint_t r = wp(500000, 1.0f, EVLA_WP_RESET);
    evla_motion_push(&m, &r, 0);
    CHECK(m.count == 1, "reset leaves one point, got %u", m.count);
}

static void test_limiter(void)
{
    evla_joint_limits_t l = {-1.0f, 1.0f, 2.0f, 20.0f};
    float cmd = 0.0f, vel = 0.0f, dt = 0.001f;
    float max_step = 0.0f, max_dv = 0.0f;
    for (int k = 0; k < 3000; k++) {
        float target = (k < 1500) ? 5.0f : -5.0f; /* beyond the limits both ways */
        float c0 = cmd, v0 = vel;
        evla_limit_joint(&cmd, &vel, target, 0.0f, &l, dt);
        CHECK(cmd <= 1.0f && cmd >= -1.0f, "cmd %g out of limits", (double)cmd);
        if (fabsf(cmd - c0) > max_step)
            max_step = fabsf(cmd - c0);
        if (fabsf(vel - v0) > max_dv)
            max_dv = fabsf(vel - v0);
    }
    CHECK(max_step <= 2.0f * dt * 1.0001f, "max step %g", (double)max_step);
    /* arriving at the limit can stop harder than amax (the clamp wins), elsewhere dv <= a dt */
    evla_joint_limits_t wide = {-10.0f, 10.0f, 2.0f, 20.0f};
    cmd = 0.0f;
    vel = 0.0f;
    max_dv = 0.0f;
    float peak = 0.0f;
    for (int k = 0; k < 3000; k++) {
        float v0 = vel;
        evla_limit_joint(&cmd, &vel, 1.0f, 0.0f, &wide, dt);
        if (fabsf(vel - v0) > max_dv)
            max_dv = fabsf(vel - v0);
        if (cmd > peak)
            peak = cmd;
    }
    CHECK(max_dv <= 20.0f * dt * 1.0001f, "max dv %g", (double)max_dv);
    CHECK(fabsf(cmd - 1.0f) < 1e-4f, "settles at target, got %g", (double)cmd);
    CHECK(peak < 1.0f + 2e-3f, "overshoot %g", (double)(peak - 1.0f));
}

static void test_feetech(void)
{
    for (int c = 0; c < 4096; c += 7) {
        float r = fts_counts_to_rad((uint16_t)c);
        CHECK(fts_rad_to_counts(r) == c, "round trip %d", c);
    }
    CHECK(fts_rad_to_counts(0.0f) == 2048, "0 rad is 2048");
    CHECK(fts_rad_to_counts(100.0f) == 4095 && fts_rad_to_counts(-100.0f) == 0, "clamped");
    uint8_t ids[6] = {1, 2, 3, 4, 5, 6};
    uint16_t vals[6] = {0, 1, 2048, 4095, 300, 4000};
    uint8_t pkt[64];
    size_t n = fts_build_sync_write_u16(FTS_ADDR_GOAL_POSITION, ids, vals, 6, pkt, sizeof pkt);
    CHECK(n == 6 + 2 + 18, "sync write length %zu", n);
    fts_parser_t p;
    fts_parser_init(&p);
    int got = 0;
    uint8_t noise[] = {0x00, 0xFF, 0x12, 0xFF};
    for (size_t i = 0; i < sizeof noise; i++)
        got += fts_parser_push(&p, noise[i]);
    for (size_t i = 0; i < n; i++)
        got += fts_parser_push(&p, pkt[i]);
    CHECK(got == 1 && p.pkt.instr == FTS_INST_SYNC_WRITE && p.pkt.id == FTS_BROADCAST_ID &&
              p.pkt.params[0] == FTS_ADDR_GOAL_POSITION && p.pkt.params[10] == 0x08,
          "parse sync write");
    /* a flipped byte must fail the checksum */
    pkt[7] ^= 0x04;
    got = 0;
    for (size_t i = 0; i < n; i++)
        got += fts_parser_push(&p, pkt[i]);
    CHECK(got == 0 && p.bad_checksum == 1, "bad checksum rejected");
    /* reference packet from the Feetech manual style: read present position of id 1 */
    uint8_t params[2] = {FTS_ADDR_PRESENT_POSITION, 2};
    n = fts_build(1, FTS_INST_READ, params, 2, pkt, sizeof pkt);
    const uint8_t want[] = {0xFF, 0xFF, 0x01, 0x04, 0x02, 0x38, 0x02, 0xBE};
    CHECK(n == sizeof want && memcmp(pkt, want, n) == 0, "read packet bytes");
}

static void test_cobs_edges(void)
{
    uint8_t in[600], enc[700], dec[700];
    for (size_t n = 0; n < sizeof in; n += 37) {
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)((i * 31 + n) % 5 == 0 ? 0 : i * 7 + 1);
        size_t en = evla_cobs_encode(in, n, enc, sizeof enc);
        CHECK(en > 0, "encode %zu", n);
        CHECK(memchr(enc, 0, en) == NULL, "no zero in encoding of %zu", n);
        int dn = evla_cobs_decode(enc, en, dec, sizeof dec);
        CHECK(dn == (int)n && memcmp(dec, in, n) == 0, "round trip %zu", n);
    }
    CHECK(evla_cobs_encode(in, 300, enc, 100) == 0, "small output buffer refused");
}

int main(void)
{
    test_queue();
    test_limiter();
    test_feetech();
    test_cobs_edges();
    printf("test_core: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
