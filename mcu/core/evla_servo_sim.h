/* Six simulated Feetech STS servos on a byte bus: what a port without a real bus (QEMU,
 * the host build's --servo loopback) plugs behind the firmware's servo driver, so the
 * driver's packets are still exercised end to end. Positions move towards the goal at a
 * bounded speed while torque is on. */
#ifndef EVLA_SERVO_SIM_H
#define EVLA_SERVO_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "evla_feetech.h"
#include "evla_proto.h"

typedef struct {
    uint8_t ids[EVLA_N_JOINTS];
    uint16_t pos[EVLA_N_JOINTS];
    uint16_t goal[EVLA_N_JOINTS];
    uint8_t torque;
    uint16_t max_counts_per_ms;
    fts_parser_t parser;
    uint8_t out[256];
    size_t out_len;
} evla_servo_sim_t;

void evla_servo_sim_init(evla_servo_sim_t *s, const uint8_t ids[EVLA_N_JOINTS]);
/* Bytes the master wrote on the bus. */
void evla_servo_sim_rx(evla_servo_sim_t *s, const uint8_t *data, size_t n);
/* Advance the servos by one millisecond. */
void evla_servo_sim_step_1ms(evla_servo_sim_t *s);
/* Take the bytes the servos answered (status packets); returns how many were copied. */
size_t evla_servo_sim_take(evla_servo_sim_t *s, uint8_t *buf, size_t cap);

#endif
