/* Canonical text of a decoded message, identical to Python's Frame.canonical().
 * Host tests and tools only (uses snprintf); not linked into the M7 image. */
#include "evla_proto.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct {
    char *out;
    size_t cap;
    size_t len;
} sbuf_t;

static void put(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    int n = vsnprintf(b->out + (b->len < b->cap ? b->len : b->cap), room, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n;
}

static void put_vec(sbuf_t *b, const float *v)
{
    for (int j = 0; j < EVLA_N_JOINTS; j++)
        put(b, j ? ",%.9g" : "%.9g", (double)v[j]);
}

static const char *type_name(uint8_t t)
{
    switch (t) {
    case EVLA_PING: return "PING";
    case EVLA_WAYPOINTS: return "WAYPOINTS";
    case EVLA_HOLD: return "HOLD";
    case EVLA_ENABLE: return "ENABLE";
    case EVLA_DISABLE: return "DISABLE";
    case EVLA_LIMITS: return "LIMITS";
    case EVLA_CONFIG: return "CONFIG";
    case EVLA_GET_STATE: return "GET_STATE";
    case EVLA_PONG: return "PONG";
    case EVLA_STATE: return "STATE";
    case EVLA_ERROR: return "ERROR";
    default: return "?";
    }
}

int evla_format_msg(const evla_msg_t *m, char *out, size_t cap)
{
    sbuf_t b = {out, cap, 0};
    if (cap)
        out[0] = 0;
    put(&b, "%s seq=%u", type_name(m->type), (unsigned)m->seq);
    switch (m->type) {
    case EVLA_PING: put(&b, " t_host_ns=%llu", (unsigned long long)m->u.ping.t_host_ns); break;
    case EVLA_WAYPOINTS:
        put(&b, " count=%u", (unsigned)m->u.waypoints.count);
        for (unsigned i = 0; i < m->u.waypoints.count && i < EVLA_MAX_WAYPOINTS; i++) {
            const evla_waypoint_t *w = &m->u.waypoints.pts[i];
            put(&b, " [t_us=%llu pos=", (unsigned long long)w->t_us);
            put_vec(&b, w->pos);
            put(&b, " flags=%u]", (unsigned)w->flags);
        }
        break;
    case EVLA_LIMITS:
        for (int j = 0; j < EVLA_N_JOINTS; j++) {
            const evla_joint_limits_t *l = &m->u.limits.joint[j];
            put(&b, " [%.9g,%.9g,%.9g,%.9g]", (double)l->min_rad, (double)l->max_rad,
                (double)l->max_vel_rad_s, (double)l->max_acc_rad_s2);
        }
        break;
    case EVLA_CONFIG:
        put(&b, " watchdog_ms=%u state_period_ms=%u", (unsigned)m->u.config.watchdog_ms,
            (unsigned)m->u.config.state_period_ms);
        break;
    case EVLA_PONG:
        put(&b, " t_host_ns=%llu t_mcu_us=%llu", (unsigned long long)m->u.pong.t_host_ns,
            (unsigned long long)m->u.pong.t_mcu_us);
        break;
    case EVLA_STATE: {
        const evla_state_t *s = &m->u.state;
        put(&b, " t_mcu_us=%llu measured=", (unsigned long long)s->t_mcu_us);
        put_vec(&b, s->measured);
        put(&b, " commanded=");
        put_vec(&b, s->commanded);
        put(&b,
            " queue_depth=%u last_seq=%u underruns=%lu faults=%lu mode=%u late=%lu"
            " duplicates=%lu rx_frames=%lu rx_errors=%lu seq_gaps=%lu ticks=%lu",
            (unsigned)s->queue_depth, (unsigned)s->last_seq, (unsigned long)s->underruns,
            (unsigned long)s->faults, (unsigned)s->mode, (unsigned long)s->late,
            (unsigned long)s->duplicates, (unsigned long)s->rx_frames,
            (unsigned long)s->rx_errors, (unsigned long)s->seq_gaps, (unsigned long)s->ticks);
        break;
    }
    case EVLA_ERROR:
        put(&b, " code=%u ref_type=%u ref_seq=%u detail=%lu", (unsigned)m->u.error.code,
            (unsigned)m->u.error.ref_type, (unsigned)m->u.error.ref_seq,
            (unsigned long)m->u.error.detail);
        break;
    default: break;
    }
    return (int)b.len;
}
