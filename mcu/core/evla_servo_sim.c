#include "evla_servo_sim.h"

#include <string.h>

void evla_servo_sim_init(evla_servo_sim_t *s, const uint8_t ids[EVLA_N_JOINTS])
{
    memset(s, 0, sizeof *s);
    memcpy(s->ids, ids, sizeof s->ids);
    for (int j = 0; j < EVLA_N_JOINTS; j++) {
        s->pos[j] = 2048;
        s->goal[j] = 2048;
    }
    s->max_counts_per_ms = 4; /* ~6 rad/s, faster than the default velocity limit */
    fts_parser_init(&s->parser);
}

static int index_of(const evla_servo_sim_t *s, uint8_t id)
{
    for (int j = 0; j < EVLA_N_JOINTS; j++)
        if (s->ids[j] == id)
            return j;
    return -1;
}

static void reply_position(evla_servo_sim_t *s, int j)
{
    uint8_t params[3] = {0, (uint8_t)(s->pos[j] & 0xFF), (uint8_t)(s->pos[j] >> 8)};
    /* status packet: the "instruction" slot carries the servo's error byte (0) */
    uint8_t pkt[8];
    size_t n = fts_build(s->ids[j], params[0], params + 1, 2, pkt, sizeof pkt);
    if (n && s->out_len + n <= sizeof s->out) {
        memcpy(s->out + s->out_len, pkt, n);
        s->out_len += n;
    }
}

static void handle(evla_servo_sim_t *s, const fts_packet_t *p)
{
    if (p->instr == FTS_INST_SYNC_WRITE && p->nparams >= 2 &&
        p->params[0] == FTS_ADDR_GOAL_POSITION && p->params[1] == 2) {
        for (unsigned k = 2; k + 3 <= p->nparams; k += 3) {
            int j = index_of(s, p->params[k]);
            if (j >= 0)
                s->goal[j] = (uint16_t)(p->params[k + 1] | (p->params[k + 2] << 8));
        }
    } else if (p->instr == FTS_INST_SYNC_READ && p->nparams >= 2 &&
               p->params[0] == FTS_ADDR_PRESENT_POSITION && p->params[1] == 2) {
        for (unsigned k = 2; k < p->nparams; k++) {
            int j = index_of(s, p->params[k]);
            if (j >= 0)
                reply_position(s, j);
        }
    } else if (p->instr == FTS_INST_READ && p->nparams == 2 &&
               p->params[0] == FTS_ADDR_PRESENT_POSITION) {
        int j = index_of(s, p->id);
        if (j >= 0)
            reply_position(s, j);
    } else if (p->instr == FTS_INST_WRITE && p->nparams == 2 &&
               p->params[0] == FTS_ADDR_TORQUE_ENABLE) {
        s->torque = p->params[1] ? 1 : 0;
    }
}

void evla_servo_sim_rx(evla_servo_sim_t *s, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fts_parser_push(&s->parser, data[i]))
            handle(s, &s->parser.pkt);
}

void evla_servo_sim_step_1ms(evla_servo_sim_t *s)
{
    if (!s->torque)
        return;
    for (int j = 0; j < EVLA_N_JOINTS; j++) {
        int d = (int)s->goal[j] - (int)s->pos[j];
        int m = s->max_counts_per_ms;
        if (d > m)
            d = m;
        if (d < -m)
            d = -m;
        s->pos[j] = (uint16_t)((int)s->pos[j] + d);
    }
}

size_t evla_servo_sim_take(evla_servo_sim_t *s, uint8_t *buf, size_t cap)
{
    size_t n = s->out_len < cap ? s->out_len : cap;
    memcpy(buf, s->out, n);
    memmove(s->out, s->out + n, s->out_len - n);
    s->out_len -= n;
    return n;
}
