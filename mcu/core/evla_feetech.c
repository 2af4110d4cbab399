#include "evla_feetech.h"

#include <string.h>

#define TWO_PI_F 6.28318530717958647692f

uint16_t fts_rad_to_counts(float rad)
{
    float c = 2048.0f + rad * (4096.0f / TWO_PI_F);
    if (!(c >= 0.0f)) /* also catches NaN */
        return 0;
    if (c > 4095.0f)
        return 4095;
    return (uint16_t)(c + 0.5f);
}

float fts_counts_to_rad(uint16_t counts)
{
    return ((float)counts - 2048.0f) * (TWO_PI_F / 4096.0f);
}

size_t fts_build(uint8_t id, uint8_t instr, const uint8_t *params, size_t n, uint8_t *out,
                 size_t cap)
{
    if (n > FTS_MAX_PARAMS || cap < n + 6u)
        return 0;
    out[0] = 0xFF;
    out[1] = 0xFF;
    out[2] = id;
    out[3] = (uint8_t)(n + 2u);
    out[4] = instr;
    uint32_t sum = (uint32_t)id + out[3] + instr;
    for (size_t i = 0; i < n; i++) {
        out[5 + i] = params[i];
        sum += params[i];
    }
    out[5 + n] = (uint8_t)~sum;
    return n + 6u;
}

size_t fts_build_sync_write_u16(uint8_t addr, const uint8_t *ids, const uint16_t *values,
                                size_t n, uint8_t *out, size_t cap)
{
    uint8_t params[2 + 3 * 16];
    if (n > 16)
        return 0;
    params[0] = addr;
    params[1] = 2;
    for (size_t i = 0; i < n; i++) {
        params[2 + 3 * i] = ids[i];
        params[3 + 3 * i] = (uint8_t)(values[i] & 0xFF); /* STS: little-endian */
        params[4 + 3 * i] = (uint8_t)(values[i] >> 8);
    }
    return fts_build(FTS_BROADCAST_ID, FTS_INST_SYNC_WRITE, params, 2 + 3 * n, out, cap);
}

size_t fts_build_sync_read(uint8_t addr, uint8_t len, const uint8_t *ids, size_t n, uint8_t *out,
                           size_t cap)
{
    uint8_t params[2 + 16];
    if (n > 16)
        return 0;
    params[0] = addr;
    params[1] = len;
    memcpy(params + 2, ids, n);
    return fts_build(FTS_BROADCAST_ID, FTS_INST_SYNC_READ, params, 2 + n, out, cap);
}

void fts_parser_init(fts_parser_t *p) { memset(p, 0, sizeof *p); }

enum { S_H1, S_H2, S_ID, S_LEN, S_INSTR, S_PARAMS, S_CHK };

int fts_parser_push(fts_parser_t *p, uint8_t b)
{
    switch (p->state) {
    case S_H1:
        if (b == 0xFF)
            p->state = S_H2;
        return 0;
    case S_H2:
        p->state = (b == 0xFF) ? S_ID : S_H1;
        return 0;
    case S_ID:
        if (b == 0xFF) /* a third 0xFF: still in the header */
            return 0;
        p->pkt.id = b;
        p->sum = b;
        p->state = S_LEN;
        return 0;
    case S_LEN:
        if (b < 2 || b > FTS_MAX_PARAMS + 2) {
            p->state = S_H1;
            return 0;
        }
        p->len = b;
        p->sum = (uint8_t)(p->sum + b);
        p->state = S_INSTR;
        return 0;
    case S_INSTR:
        p->pkt.instr = b;
        p->sum = (uint8_t)(p->sum + b);
        p->pkt.nparams = (uint8_t)(p->len - 2);
        p->pos = 0;
        p->state = p->pkt.nparams ? S_PARAMS : S_CHK;
        return 0;
    case S_PARAMS:
        p->pkt.params[p->pos++] = b;
        p->sum = (uint8_t)(p->sum + b);
        if (p->pos >= p->pkt.nparams)
            p->state = S_CHK;
        return 0;
    case S_CHK:
    default: {
        p->state = S_H1;
        uint8_t want = (uint8_t)(0xFFu - p->sum);
        if (want == b) {
            p->packets++;
            return 1;
        }
        p->bad_checksum++;
        return 0;
    }
    }
}
