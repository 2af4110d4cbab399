#include "evla_fw.h"

#include <string.h>

#define ALL_SERVOS ((uint8_t)((1u << EVLA_N_JOINTS) - 1u))

void evla_fw_default_config(evla_fw_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->watchdog_ms = 500;
    cfg->state_period_ms = 10;
    cfg->servo_period_ms = 10;
    for (int j = 0; j < EVLA_N_JOINTS; j++)
        cfg->servo_ids[j] = (uint8_t)(j + 1);
    evla_motion_default_limits(cfg->limits);
}

static void send_msg(evla_fw_t *fw, evla_msg_t *m)
{
    uint8_t wire[EVLA_MAX_WIRE];
    m->seq = fw->tx_seq++;
    size_t n = evla_encode_frame(m, wire, sizeof wire);
    if (n) {
        fw->port.link_write(fw->port.ctx, wire, n);
        fw->tx_frames++;
    }
}

static void send_error(evla_fw_t *fw, uint8_t code, uint8_t ref_type, uint16_t ref_seq,
                       uint32_t detail)
{
    evla_msg_t m;
    m.type = EVLA_ERROR;
    m.u.error.code = code;
    m.u.error.ref_type = ref_type;
    m.u.error.ref_seq = ref_seq;
    m.u.error.detail = detail;
    send_msg(fw, &m);
}

void evla_fw_fill_state(const evla_fw_t *fw, evla_state_t *st)
{
    st->t_mcu_us = fw->now_us;
    memcpy(st->measured, fw->measured, sizeof st->measured);
    memcpy(st->commanded, fw->mo.cmd, sizeof st->commanded);
    st->queue_depth = fw->mo.count;
    st->last_seq = fw->last_seq;
    st->underruns = fw->mo.underruns;
    uint32_t f = fw->faults_latched;
    if (fw->mo.underrun_active)
        f |= EVLA_FAULT_UNDERRUN;
    if (fw->servo_timeout)
        f |= EVLA_FAULT_SERVO_TIMEOUT;
    if (fw->mo.clamped)
        f |= EVLA_FAULT_LIMIT_CLAMPED;
    if (fw->mo.overflows)
        f |= EVLA_FAULT_QUEUE_OVERFLOW;
    st->faults = f;
    st->mode = fw->mode;
    st->late = fw->mo.late;
    st->duplicates = fw->mo.duplicates;
    st->rx_frames = fw->rx.frames;
    st->rx_errors = evla_stream_error_total(&fw->rx);
    st->seq_gaps = fw->seq_gaps;
    st->ticks = fw->ticks;
}

static void send_state(evla_fw_t *fw)
{
    evla_msg_t m;
    m.type = EVLA_STATE;
    evla_fw_fill_state(fw, &m.u.state);
    send_msg(fw, &m);
}

static void servo_torque(evla_fw_t *fw, uint8_t on)
{
    uint8_t pkt[16];
    uint8_t params[2] = {FTS_ADDR_TORQUE_ENABLE, on};
    size_t n = fts_build(FTS_BROADCAST_ID, FTS_INST_WRITE, params, 2, pkt, sizeof pkt);
    if (n && fw->port.servo_write)
        fw->port.servo_write(fw->port.ctx, pkt, n);
}

static void enable(evla_fw_t *fw);

void evla_fw_hold(evla_fw_t *fw)
{
    if (fw->mode == EVLA_MODE_DISABLED)
        return;
    evla_motion_hold(&fw->mo);
    if (fw->mode != EVLA_MODE_HOLDING)
        fw->hold_since_us = fw->now_us;
    fw->mode = EVLA_MODE_HOLDING;
}

static void disable(evla_fw_t *fw)
{
    fw->enable_pending = 0;
    fw->mode = EVLA_MODE_DISABLED;
    evla_motion_reset(&fw->mo, fw->measured, fw->now_us);
    servo_torque(fw, 0);
}

/* Torque on only once the arm's position is known: enabling on the zero-initialised
 * `measured` would command every joint to 0 rad and jerk the arm there. Without a servo
 * bus (servo_period_ms == 0) there is nothing to wait for. */
static void request_enable(evla_fw_t *fw)
{
    if (fw->measured_valid || fw->cfg.servo_period_ms == 0) {
        fw->enable_pending = 0;
        enable(fw);
    } else {
        fw->enable_pending = 1;
    }
}

void evla_fw_init(evla_fw_t *fw, const evla_port_t *port, const evla_fw_config_t *cfg,
                  uint64_t now_us)
{
    memset(fw, 0, sizeof *fw);
    fw->port = *port;
    fw->cfg = *cfg;
    evla_stream_init(&fw->rx);
    fts_parser_init(&fw->servo_rx);
    evla_motion_init(&fw->mo, cfg->limits);
    evla_motion_reset(&fw->mo, fw->measured, now_us);
    fw->now_us = now_us;
    fw->last_rx_us = now_us;
    fw->mode = EVLA_MODE_DISABLED;
    fw->state_countdown = cfg->state_period_ms;
    fw->servo_countdown = 1;
    if (cfg->enable_at_boot)
        request_enable(fw);
}

static void enable(evla_fw_t *fw)
{
    fw->mode = EVLA_MODE_RUNNING;
    fw->faults_latched = 0;
    fw->servo_error_id = 0;
    fw->servo_error_bits = 0;
    fw->servo_misses = 0;
    fw->mo.overflows = 0;
    evla_motion_reset(&fw->mo, fw->measured, fw->now_us);
    servo_torque(fw, 1);
}

static void handle(evla_fw_t *fw, evla_msg_t *m, uint64_t now_us)
{
    if (fw->have_seq) {
        uint16_t gap = (uint16_t)(m->seq - (uint16_t)(fw->last_seq + 1u));
        if (gap != 0 && gap < 1024u) /* a larger jump is a new host session, not a loss */
            fw->seq_gaps += gap;
    }
    fw->have_seq = 1;
    fw->last_seq = m->seq;
    fw->last_rx_us = now_us;

    switch (m->type) {
    case EVLA_PING: {
        evla_msg_t r;
        r.type = EVLA_PONG;
        r.u.pong.t_host_ns = m->u.ping.t_host_ns;
        r.u.pong.t_mcu_us = now_us;
        send_msg(fw, &r);
        break;
    }
    case EVLA_WAYPOINTS: {
        if (fw->mode == EVLA_MODE_DISABLED) {
            send_error(fw, EVLA_E_NOT_ENABLED, m->type, m->seq, m->u.waypoints.count);
            break;
        }
        if (fw->faults_latched & EVLA_FAULT_SERVO_ERROR) {
            /* a servo fault stopped the arm: only ENABLE (a person's decision) moves it again */
            send_error(fw, EVLA_E_NOT_ENABLED, m->type, m->seq, EVLA_FAULT_SERVO_ERROR);
            break;
        }
        fw->mode = EVLA_MODE_RUNNING;
        uint32_t full = 0;
        /* the tick is the time base: a waypoint is late if the next tick is already past it */
        uint64_t now = fw->now_us;
        for (unsigned i = 0; i < m->u.waypoints.count; i++)
            if (evla_motion_push(&fw->mo, &m->u.waypoints.pts[i], now) == EVLA_WP_FULL)
                full++;
        if (full) {
            fw->faults_latched |= EVLA_FAULT_QUEUE_OVERFLOW;
            send_error(fw, EVLA_E_QUEUE_FULL, m->type, m->seq, full);
        }
        break;
    }
    case EVLA_HOLD: evla_fw_hold(fw); break;
    case EVLA_ENABLE: request_enable(fw); break;
    case EVLA_DISABLE: disable(fw); break;
    case EVLA_LIMITS:
        memcpy(fw->cfg.limits, m->u.limits.joint, sizeof fw->cfg.limits);
        evla_motion_set_limits(&fw->mo, fw->cfg.limits);
        break;
    case EVLA_CONFIG:
        fw->cfg.watchdog_ms = m->u.config.watchdog_ms;
        fw->cfg.state_period_ms = m->u.config.state_period_ms;
        fw->state_countdown = fw->cfg.state_period_ms;
        break;
    case EVLA_GET_STATE: send_state(fw); break;
    default: /* PONG/STATE/ERROR travel MCU->host only */
        send_error(fw, EVLA_E_UNKNOWN_TYPE, m->type, m->seq, 0);
        break;
    }
}

void evla_fw_link_rx(evla_fw_t *fw, const uint8_t *data, size_t n, uint64_t now_us)
{
    for (size_t i = 0; i < n; i++) {
        int got = 0;
        evla_result_t r = evla_stream_push(&fw->rx, data[i], &fw->msg, &got);
        if (got) {
            handle(fw, &fw->msg, now_us);
            continue;
        }
        switch (r) {
        case EVLA_OK: break;
        case EVLA_ERR_VERSION:
            send_error(fw, EVLA_E_BAD_VERSION, fw->msg.type, fw->msg.seq, 0);
            break;
        case EVLA_ERR_TYPE:
            send_error(fw, EVLA_E_UNKNOWN_TYPE, fw->msg.type, fw->msg.seq, 0);
            break;
        case EVLA_ERR_LENGTH:
            send_error(fw, EVLA_E_BAD_LENGTH, fw->msg.type, fw->msg.seq, 0);
            break;
        case EVLA_ERR_VALUE:
            send_error(fw, EVLA_E_BAD_VALUE, fw->msg.type, fw->msg.seq, 0);
            break;
        default: /* cobs, crc, short, oversize: nothing trustworthy to answer */
            fw->faults_latched |= EVLA_FAULT_RX_ERROR;
            break;
        }
    }
}

void evla_fw_servo_rx(evla_fw_t *fw, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fts_parser_push(&fw->servo_rx, data[i]))
            continue;
        const fts_packet_t *p = &fw->servo_rx.pkt;
        if (p->nparams != 2) /* we only ever read the 2-byte present position */
            continue;
        if ((p->instr & FTS_ERR_STOP) && !(fw->faults_latched & EVLA_FAULT_SERVO_ERROR)) {
            fw->servo_error_id = p->id;
            fw->servo_error_bits = p->instr;
            fw->faults_latched |= EVLA_FAULT_SERVO_ERROR;
            evla_fw_hold(fw);
        }
        for (int j = 0; j < EVLA_N_JOINTS; j++) {
            if (fw->cfg.servo_ids[j] == p->id) {
                uint16_t counts = (uint16_t)(p->params[0] | (p->params[1] << 8));
                fw->measured[j] = fts_counts_to_rad(counts);
                fw->servo_seen_mask |= (uint8_t)(1u << j);
                fw->servo_ever_mask |= (uint8_t)(1u << j);
            }
        }
        /* any cycle counts: on a busy bus the six answers may straddle two read cycles */
        if (fw->servo_ever_mask == ALL_SERVOS && !fw->measured_valid) {
            fw->measured_valid = 1;
            if (fw->enable_pending) {
                fw->enable_pending = 0;
                enable(fw);
            }
        }
    }
}

static void servo_cycle(evla_fw_t *fw)
{
    uint8_t pkt[64];
    size_t n;
    if (fw->servo_read_outstanding) {
        fw->servo_timeout = fw->servo_seen_mask != ALL_SERVOS;
        if (fw->servo_timeout) {
            fw->servo_timeouts++;
            if (fw->servo_misses < 255u)
                fw->servo_misses++;
        } else {
            fw->servo_misses = 0;
        }
        if (fw->cfg.servo_miss_hold && fw->servo_misses >= fw->cfg.servo_miss_hold &&
            fw->mode == EVLA_MODE_RUNNING) {
            fw->faults_latched |= EVLA_FAULT_SERVO_ERROR | EVLA_FAULT_SERVO_TIMEOUT;
            evla_fw_hold(fw);
        }
    }
    if (fw->mode != EVLA_MODE_DISABLED) {
        uint16_t goals[EVLA_N_JOINTS];
        for (int j = 0; j < EVLA_N_JOINTS; j++)
            goals[j] = fts_rad_to_counts(fw->mo.cmd[j]);
        n = fts_build_sync_write_u16(FTS_ADDR_GOAL_POSITION, fw->cfg.servo_ids, goals,
                                     EVLA_N_JOINTS, pkt, sizeof pkt);
        if (n && fw->port.servo_write)
            fw->port.servo_write(fw->port.ctx, pkt, n);
    }
    n = fts_build_sync_read(FTS_ADDR_PRESENT_POSITION, 2, fw->cfg.servo_ids, EVLA_N_JOINTS, pkt,
                            sizeof pkt);
    fw->servo_seen_mask = 0;
    fw->servo_read_outstanding = 1;
    if (n && fw->port.servo_write)
        fw->port.servo_write(fw->port.ctx, pkt, n);
}

void evla_fw_tick(evla_fw_t *fw, uint64_t now_us)
{
    fw->now_us = now_us;
    fw->ticks++;
    if (fw->mode == EVLA_MODE_DISABLED) {
        /* torque off: the command follows the arm so ENABLE starts where it stands */
        evla_motion_reset(&fw->mo, fw->measured, now_us);
    } else {
        /* frames are stamped on arrival and may be up to a tick ahead of now_us */
        if (fw->mode == EVLA_MODE_RUNNING && fw->cfg.watchdog_ms &&
            now_us > fw->last_rx_us + (uint64_t)fw->cfg.watchdog_ms * 1000u) {
            evla_fw_hold(fw);
            fw->faults_latched |= EVLA_FAULT_WATCHDOG;
            send_error(fw, EVLA_E_WATCHDOG, 0, fw->last_seq,
                       (uint32_t)((now_us - fw->last_rx_us) / 1000u));
        }
        if (fw->mode == EVLA_MODE_HOLDING && fw->cfg.torque_off_ms &&
            now_us >= fw->hold_since_us + (uint64_t)fw->cfg.torque_off_ms * 1000u) {
            disable(fw); /* held long enough with nobody taking over: let the arm rest */
        } else {
            evla_motion_step(&fw->mo, now_us, 1.0f / (float)EVLA_TICK_HZ);
        }
    }
    if (fw->cfg.servo_period_ms && --fw->servo_countdown == 0) {
        fw->servo_countdown = fw->cfg.servo_period_ms;
        servo_cycle(fw);
    }
    if (fw->cfg.state_period_ms && --fw->state_countdown == 0) {
        fw->state_countdown = fw->cfg.state_period_ms;
        send_state(fw);
    }
}
