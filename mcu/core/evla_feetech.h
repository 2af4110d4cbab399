/* Feetech STS servo bus codec (SO-100 / SO-101 arms): FF FF ID LEN INSTR params CHK.
 * Builders for the master side, a streaming parser that accepts any packet (instruction
 * or status), and count<->radian conversion (4096 counts/rev, 2048 = 0 rad). */
#ifndef EVLA_FEETECH_H
#define EVLA_FEETECH_H

#include <stddef.h>
#include <stdint.h>

#define FTS_BROADCAST_ID 0xFE
#define FTS_INST_PING 0x01
#define FTS_INST_READ 0x02
#define FTS_INST_WRITE 0x03
#define FTS_INST_SYNC_READ 0x82
#define FTS_INST_SYNC_WRITE 0x83
#define FTS_ADDR_TORQUE_ENABLE 0x28
#define FTS_ADDR_GOAL_POSITION 0x2A
#define FTS_ADDR_PRESENT_POSITION 0x38
#define FTS_MAX_PARAMS 250
/* status packet error byte (STS series) */
#define FTS_ERR_VOLTAGE 0x01
#define FTS_ERR_SENSOR 0x02
#define FTS_ERR_OVERHEAT 0x04
#define FTS_ERR_OVERCURRENT 0x08
#define FTS_ERR_OVERLOAD 0x20
/* the errors that stop the arm: the servo is being damaged or is damaging something */
#define FTS_ERR_STOP (FTS_ERR_OVERHEAT | FTS_ERR_OVERCURRENT | FTS_ERR_OVERLOAD)

typedef struct {
    uint8_t id;
    uint8_t instr; /* instruction (master->servo) or error byte (servo status) */
    uint8_t nparams;
    uint8_t params[FTS_MAX_PARAMS];
} fts_packet_t;

typedef struct {
    uint8_t state;
    uint8_t pos;
    uint8_t len;
    uint8_t sum;
    fts_packet_t pkt;
    uint32_t bad_checksum;
    uint32_t packets;
} fts_parser_t;

uint16_t fts_rad_to_counts(float rad);
float fts_counts_to_rad(uint16_t counts);

/* All builders return the packet length or 0 if cap is too small. */
size_t fts_build(uint8_t id, uint8_t instr, const uint8_t *params, size_t n, uint8_t *out,
                 size_t cap);
size_t fts_build_sync_write_u16(uint8_t addr, const uint8_t *ids, const uint16_t *values,
                                size_t n, uint8_t *out, size_t cap);
size_t fts_build_sync_read(uint8_t addr, uint8_t len, const uint8_t *ids, size_t n, uint8_t *out,
                           size_t cap);

void fts_parser_init(fts_parser_t *p);
/* Returns 1 when p->pkt holds a complete packet with a valid checksum. */
int fts_parser_push(fts_parser_t *p, uint8_t byte);

#endif
