/* edgevla M7 link codec (mcu/PROTOCOL.md). No heap, no platform headers. */
#include "evla_proto.h"

#include <math.h>
#include <string.h>

static const char *const result_names[EVLA_ERR__COUNT] = {
    "ok", "cobs", "crc", "short", "oversize", "version", "type", "length", "value",
};

const char *evla_result_name(evla_result_t r)
{
    return ((unsigned)r < EVLA_ERR__COUNT) ? result_names[r] : "?";
}

/* ------------------------------------------------------------------ CRC-32/ISO-HDLC */

uint32_t evla_crc32(const uint8_t *data, size_t n)
{
    /* Nibble table: 64 bytes of flash instead of 1 KiB, fast enough for 500-byte frames. */
    static const uint32_t tab[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
        0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
    };
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= data[i];
        c = (c >> 4) ^ tab[c & 0xFu];
        c = (c >> 4) ^ tab[c & 0xFu];
    }
    return c ^ 0xFFFFFFFFu;
}

/* ------------------------------------------------------------------------------ COBS */

size_t evla_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t out_cap)
{
    if (out_cap == 0)
        return 0;
    size_t o = 1, code_idx = 0;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_idx] = code;
            if (o >= out_cap)
                return 0;
            code_idx = o;
            out[o++] = 0;
            code = 1;
        } else {
            if (o >= out_cap)
                return 0;
            out[o++] = in[i];
            code++;
            if (code == 0xFF) {
                out[code_idx] = code;
                if (o >= out_cap)
                    return 0;
                code_idx = o;
                out[o++] = 0;
                code = 1;
            }
        }
    }
    out[code_idx] = code;
    return o;
}

int evla_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_cap)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i];
        if (code == 0)
            return -1;
        i++;
        size_t end = i + (size_t)code - 1u;
        if (end > n)
            return -1;
        for (; i < end; i++) {
            if (in[i] == 0 || o >= out_cap)
                return -1;
            out[o++] = in[i];
        }
        if (code != 0xFF && i < n) {
            if (o >= out_cap)
                return -1;
            out[o++] = 0;
        }
    }
    return (int)o;
}

/* ------------------------------------------------------------------ little-endian I/O */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static float rdf(const uint8_t *p)
{
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint8_t *wr8(uint8_t *p, uint8_t v) { *p = v; return p + 1; }
static uint8_t *wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}
static uint8_t *wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}
static uint8_t *wr64(uint8_t *p, uint64_t v)
{
    p = wr32(p, (uint32_t)v);
    return wr32(p, (uint32_t)(v >> 32));
}
static uint8_t *wrf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return wr32(p, u);
}

/* ------------------------------------------------------------------------ messages */

static size_t body_size(const evla_msg_t *m)
{
    switch (m->type) {
    case EVLA_PING: return 8;
    case EVLA_WAYPOINTS: return 1u + (size_t)m->u.waypoints.count * EVLA_WAYPOINT_SIZE;
    case EVLA_HOLD:
    case EVLA_ENABLE:
    case EVLA_DISABLE:
    case EVLA_GET_STATE: return 0;
    case EVLA_LIMITS: return 16u * EVLA_N_JOINTS;
    case EVLA_CONFIG: return 4;
    case EVLA_PONG: return 16;
    case EVLA_STATE: return 94;
    case EVLA_ERROR: return 8;
    default: return (size_t)-1;
    }
}

size_t evla_encode_raw(const evla_msg_t *m, uint8_t *raw, size_t cap)
{
    size_t bs = body_size(m);
    if (bs == (size_t)-1 || bs > EVLA_MAX_BODY || bs + 8u > cap)
        return 0;
    if (m->type == EVLA_WAYPOINTS &&
        (m->u.waypoints.count == 0 || m->u.waypoints.count > EVLA_MAX_WAYPOINTS))
        return 0;
    uint8_t *p = raw;
    p = wr8(p, EVLA_VERSION);
    p = wr8(p, m->type);
    p = wr16(p, m->seq);
    switch (m->type) {
    case EVLA_PING: p = wr64(p, m->u.ping.t_host_ns); break;
    case EVLA_WAYPOINTS:
        p = wr8(p, m->u.waypoints.count);
        for (unsigned i = 0; i < m->u.waypoints.count; i++) {
            const evla_waypoint_t *w = &m->u.waypoints.pts[i];
            p = wr64(p, w->t_us);
            for (int j = 0; j < EVLA_N_JOINTS; j++)
                p = wrf(p, w->pos[j]);
            p = wr8(p, w->flags);
        }
        break;
    case EVLA_LIMITS:
        for (int j = 0; j < EVLA_N_JOINTS; j++) {
            const evla_joint_limits_t *l = &m->u.limits.joint[j];
            p = wrf(p, l->min_rad);
            p = wrf(p, l->max_rad);
            p = wrf(p, l->max_vel_rad_s);
            p = wrf(p, l->max_acc_rad_s2);
        }
        break;
    case EVLA_CONFIG:
        p = wr16(p, m->u.config.watchdog_ms);
        p = wr16(p, m->u.config.state_period_ms);
        break;
    case EVLA_PONG:
        p = wr64(p, m->u.pong.t_host_ns);
        p = wr64(p, m->u.pong.t_mcu_us);
        break;
    case EVLA_STATE: {
        const evla_state_t *s = &m->u.state;
        p = wr64(p, s->t_mcu_us);
        for (int j = 0; j < EVLA_N_JOINTS; j++)
            p = wrf(p, s->measured[j]);
        for (int j = 0; j < EVLA_N_JOINTS; j++)
            p = wrf(p, s->commanded[j]);
        p = wr16(p, s->queue_depth);
        p = wr16(p, s->last_seq);
        p = wr32(p, s->underruns);
        p = wr32(p, s->faults);
        p = wr8(p, s->mode);
        p = wr8(p, 0);
        p = wr32(p, s->late);
        p = wr32(p, s->duplicates);
        p = wr32(p, s->rx_frames);
        p = wr32(p, s->rx_errors);
        p = wr32(p, s->seq_gaps);
        p = wr32(p, s->ticks);
        break;
    }
    case EVLA_ERROR:
        p = wr8(p, m->u.error.code);
        p = wr8(p, m->u.error.ref_type);
        p = wr16(p, m->u.error.ref_seq);
        p = wr32(p, m->u.error.detail);
        break;
    default: break;
    }
    size_t n = (size_t)(p - raw);
    wr32(p, evla_crc32(raw, n));
    return n + 4u;
}

static int finite_all(const float *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

evla_result_t evla_decode_raw(const uint8_t *raw, size_t n, evla_msg_t *m)
{
    if (n < 8)
        return EVLA_ERR_SHORT;
    if (n > EVLA_MAX_RAW)
        return EVLA_ERR_OVERSIZE;
    if (evla_crc32(raw, n - 4u) != rd32(raw + n - 4u))
        return EVLA_ERR_CRC;
    m->type = raw[1];
    m->seq = rd16(raw + 2);
    if (raw[0] != EVLA_VERSION)
        return EVLA_ERR_VERSION;
    const uint8_t *b = raw + 4;
    size_t bn = n - 8u;
    size_t want = body_size(m);
    if (want == (size_t)-1)
        return EVLA_ERR_TYPE;
    if (m->type == EVLA_WAYPOINTS) {
        if (bn == 0)
            return EVLA_ERR_LENGTH;
        want = 1u + (size_t)b[0] * EVLA_WAYPOINT_SIZE;
    }
    if (bn != want)
        return EVLA_ERR_LENGTH;
    switch (m->type) {
    case EVLA_PING: m->u.ping.t_host_ns = rd64(b); break;
    case EVLA_WAYPOINTS: {
        uint8_t cnt = b[0];
        if (cnt == 0 || cnt > EVLA_MAX_WAYPOINTS)
            return EVLA_ERR_VALUE;
        m->u.waypoints.count = cnt;
        const uint8_t *q = b + 1;
        for (unsigned i = 0; i < cnt; i++, q += EVLA_WAYPOINT_SIZE) {
            evla_waypoint_t *w = &m->u.waypoints.pts[i];
            w->t_us = rd64(q);
            for (int j = 0; j < EVLA_N_JOINTS; j++)
                w->pos[j] = rdf(q + 8 + 4 * j);
            w->flags = q[32];
            if (!finite_all(w->pos, EVLA_N_JOINTS))
                return EVLA_ERR_VALUE;
        }
        break;
    }
    case EVLA_LIMITS:
        for (int j = 0; j < EVLA_N_JOINTS; j++) {
            evla_joint_limits_t *l = &m->u.limits.joint[j];
            const uint8_t *q = b + 16 * j;
            l->min_rad = rdf(q);
            l->max_rad = rdf(q + 4);
            l->max_vel_rad_s = rdf(q + 8);
            l->max_acc_rad_s2 = rdf(q + 12);
            if (!finite_all(&l->min_rad, 1) || !finite_all(&l->max_rad, 1) ||
                !finite_all(&l->max_vel_rad_s, 1) || !finite_all(&l->max_acc_rad_s2, 1))
                return EVLA_ERR_VALUE;
            if (!(l->min_rad <= l->max_rad && l->max_vel_rad_s > 0.0f && l->max_acc_rad_s2 > 0.0f))
                return EVLA_ERR_VALUE;
        }
        break;
    case EVLA_CONFIG:
        m->u.config.watchdog_ms = rd16(b);
        m->u.config.state_period_ms = rd16(b + 2);
        break;
    case EVLA_PONG:
        m->u.pong.t_host_ns = rd64(b);
        m->u.pong.t_mcu_us = rd64(b + 8);
        break;
    case EVLA_STATE: {
        evla_state_t *s = &m->u.state;
        s->t_mcu_us = rd64(b);
        for (int j = 0; j < EVLA_N_JOINTS; j++)
            s->measured[j] = rdf(b + 8 + 4 * j);
        for (int j = 0; j < EVLA_N_JOINTS; j++)
            s->commanded[j] = rdf(b + 32 + 4 * j);
        s->queue_depth = rd16(b + 56);
        s->last_seq = rd16(b + 58);
        s->underruns = rd32(b + 60);
        s->faults = rd32(b + 64);
        s->mode = b[68];
        s->late = rd32(b + 70);
        s->duplicates = rd32(b + 74);
        s->rx_frames = rd32(b + 78);
        s->rx_errors = rd32(b + 82);
        s->seq_gaps = rd32(b + 86);
        s->ticks = rd32(b + 90);
        break;
    }
    case EVLA_ERROR:
        m->u.error.code = b[0];
        m->u.error.ref_type = b[1];
        m->u.error.ref_seq = rd16(b + 2);
        m->u.error.detail = rd32(b + 4);
        break;
    default: break; /* empty bodies */
    }
    return EVLA_OK;
}

evla_result_t evla_decode_frame(const uint8_t *enc, size_t n, evla_msg_t *m)
{
    uint8_t raw[EVLA_MAX_ENCODED];
    if (n + 1u > EVLA_MAX_WIRE)
        return EVLA_ERR_OVERSIZE;
    int rn = evla_cobs_decode(enc, n, raw, sizeof raw);
    if (rn < 0)
        return EVLA_ERR_COBS;
    return evla_decode_raw(raw, (size_t)rn, m);
}

size_t evla_encode_frame(const evla_msg_t *m, uint8_t *out, size_t cap)
{
    uint8_t raw[EVLA_MAX_RAW];
    size_t rn = evla_encode_raw(m, raw, sizeof raw);
    if (rn == 0 || cap < 2)
        return 0;
    size_t en = evla_cobs_encode(raw, rn, out, cap - 1u);
    if (en == 0)
        return 0;
    out[en] = 0;
    return en + 1u;
}

/* ------------------------------------------------------------------ stream decoder */

void evla_stream_init(evla_stream_t *s) { memset(s, 0, sizeof *s); }

uint32_t evla_stream_error_total(const evla_stream_t *s)
{
    uint32_t t = 0;
    for (int i = 1; i < EVLA_ERR__COUNT; i++)
        t += s->errors[i];
    return t;
}

evla_result_t evla_stream_push(evla_stream_t *s, uint8_t byte, evla_msg_t *msg, int *got)
{
    *got = 0;
    if (byte == 0) {
        if (s->discarding) {
            s->discarding = 0;
            s->len = 0;
            return EVLA_OK;
        }
        if (s->len == 0)
            return EVLA_OK; /* empty frame: back-to-back delimiters are legal padding */
        evla_result_t r = evla_decode_frame(s->buf, s->len, msg);
        s->len = 0;
        if (r == EVLA_OK) {
            s->frames++;
            *got = 1;
        } else {
            s->errors[r]++;
        }
        return r;
    }
    if (s->discarding)
        return EVLA_OK;
    if (s->len >= EVLA_MAX_ENCODED) {
        /* no room left for this frame: drop it and resynchronise on the next delimiter */
        s->len = 0;
        s->discarding = 1;
        s->errors[EVLA_ERR_OVERSIZE]++;
        return EVLA_ERR_OVERSIZE;
    }
    s->buf[s->len++] = byte;
    return EVLA_OK;
}
