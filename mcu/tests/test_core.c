/* Unit tests of the firmware core that are easier to state in C than through the link:
 * queue ordering, late/duplicate/overflow accounting, limiter bounds, Feetech codec. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "evla_feetech.h"
#include "evla_fw.h"
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

/* A servo bus stand-in for the safety tests: it answers every SYNC READ with the six
 * positions (error byte err[j]) unless silent, and remembers the last torque write. */
typedef struct {
    int silent;
    uint8_t err[EVLA_N_JOINTS];
    int torque; /* -1 never written */
    uint8_t pending[256];
    size_t npending;
} bus_t;

static void bus_write(void *ctx, const uint8_t *d, size_t n)
{
    bus_t *b = ctx;
    fts_parser_t p;
    fts_parser_init(&p);
    for (size_t i = 0; i < n; i++) {
        if (!fts_parser_push(&p, d[i]))
            continue;
        if (p.pkt.instr == FTS_INST_WRITE && p.pkt.nparams == 2 &&
            p.pkt.params[0] == FTS_ADDR_TORQUE_ENABLE)
            b->torque = p.pkt.params[1];
        if (p.pkt.instr == FTS_INST_SYNC_READ && !b->silent) {
            for (int j = 0; j < EVLA_N_JOINTS; j++) {
                uint8_t pos[2] = {0x00, 0x08}; /* 2048 */
                b->npending += fts_build((uint8_t)(j + 1), b->err[j], pos, 2,
                                         b->pending + b->npending, sizeof b->pending - b->npending);
            }
        }
    }
}

static void link_sink(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)d;
    (void)n;
}

static void run_ms(evla_fw_t *fw, bus_t *b, uint64_t *now, unsigned ms)
{
    for (unsigned k = 0; k < ms; k++) {
        *now += 1000;
        evla_fw_tick(fw, *now);
        if (b->npending) {
            size_t n = b->npending;
            b->npending = 0;
            evla_fw_servo_rx(fw, b->pending, n);
        }
    }
}

static void link_msg(evla_fw_t *fw, uint8_t type, uint64_t now)
{
    evla_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    if (type == EVLA_WAYPOINTS) {
        m.u.waypoints.count = 1;
        m.u.waypoints.pts[0] = wp(now + 50000, 0.1f, 0);
    }
    uint8_t wire[EVLA_MAX_WIRE];
    size_t n = evla_encode_frame(&m, wire, sizeof wire);
    evla_fw_link_rx(fw, wire, n, now);
}

static void test_hold_then_torque_off(void)
{
    static evla_fw_t fw;
    static bus_t b;
    memset(&b, 0, sizeof b);
    b.torque = -1;
    evla_fw_config_t cfg;
    evla_fw_default_config(&cfg);
    cfg.enable_at_boot = 1;
    cfg.watchdog_ms = 50;
    cfg.torque_off_ms = 200;
    cfg.servo_miss_hold = 3;
    evla_port_t port = {&b, link_sink, bus_write};
    uint64_t now = 1000000;
    evla_fw_init(&fw, &port, &cfg, now);
    CHECK(fw.mode == EVLA_MODE_DISABLED && b.torque == -1, "no torque before a measured state");
    run_ms(&fw, &b, &now, 20);
    CHECK(fw.mode == EVLA_MODE_RUNNING && b.torque == 1, "torque on once measured: mode %u",
          fw.mode);

    /* the host goes silent: the watchdog holds, the torque-off clock runs out */
    run_ms(&fw, &b, &now, 60);
    CHECK(fw.mode == EVLA_MODE_HOLDING && (fw.faults_latched & EVLA_FAULT_WATCHDOG), "watchdog hold");
    run_ms(&fw, &b, &now, 150);
    CHECK(fw.mode == EVLA_MODE_HOLDING && b.torque == 1, "still holding before torque_off_ms");
    run_ms(&fw, &b, &now, 60);
    CHECK(fw.mode == EVLA_MODE_DISABLED && b.torque == 0, "torque off after torque_off_ms: mode %u",
          fw.mode);

    /* an overloaded servo stops the arm until ENABLE; waypoints do not resume it */
    link_msg(&fw, EVLA_ENABLE, now);
    run_ms(&fw, &b, &now, 20);
    CHECK(fw.mode == EVLA_MODE_RUNNING, "re-enabled");
    b.err[2] = FTS_ERR_OVERLOAD;
    run_ms(&fw, &b, &now, 20);
    CHECK(fw.mode == EVLA_MODE_HOLDING && (fw.faults_latched & EVLA_FAULT_SERVO_ERROR) &&
          fw.servo_error_id == 3 && fw.servo_error_bits == FTS_ERR_OVERLOAD, "overload holds");
    b.err[2] = 0;
    link_msg(&fw, EVLA_WAYPOINTS, now);
    run_ms(&fw, &b, &now, 1);
    CHECK(fw.mode == EVLA_MODE_HOLDING, "waypoints do not resume after a servo fault");
    link_msg(&fw, EVLA_ENABLE, now);
    run_ms(&fw, &b, &now, 20);
    CHECK(fw.mode == EVLA_MODE_RUNNING && !(fw.faults_latched & EVLA_FAULT_SERVO_ERROR),
          "ENABLE clears it");

    /* a voltage warning alone does not stop the arm */
    b.err[0] = FTS_ERR_VOLTAGE;
    link_msg(&fw, EVLA_GET_STATE, now); /* keeps the watchdog fed */
    run_ms(&fw, &b, &now, 20);
    CHECK(fw.mode == EVLA_MODE_RUNNING, "voltage bit alone: still running");
    b.err[0] = 0;

    /* servos that stop answering: hold after servo_miss_hold read cycles */
    b.silent = 1;
    link_msg(&fw, EVLA_GET_STATE, now);
    run_ms(&fw, &b, &now, 25);
    CHECK(fw.mode == EVLA_MODE_RUNNING, "two missed cycles: still running");
    link_msg(&fw, EVLA_GET_STATE, now);
    run_ms(&fw, &b, &now, 20);
    CHECK(fw.mode == EVLA_MODE_HOLDING &&
          (fw.faults_latched & (EVLA_FAULT_SERVO_ERROR | EVLA_FAULT_SERVO_TIMEOUT)) ==
              (EVLA_FAULT_SERVO_ERROR | EVLA_FAULT_SERVO_TIMEOUT), "silent servos hold");
}

int main(void)
{
    test_queue();
    test_limiter();
    test_feetech();
    test_cobs_edges();
    test_hold_then_torque_off();
    printf("test_core: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
