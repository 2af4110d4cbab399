/* The firmware: link handling, modes, watchdog, 1 kHz tick, servo bus master, STATE reports.
 * A port provides the bytes in and out and the time; nothing here touches hardware. */
#ifndef EVLA_FW_H
#define EVLA_FW_H

#include <stddef.h>
#include <stdint.h>

#include "evla_feetech.h"
#include "evla_motion.h"
#include "evla_proto.h"

#define EVLA_TICK_HZ 1000u

/* What a port supplies (Zephyr/CMSIS style: a few functions, no board headers in core). */
typedef struct {
    void *ctx;
    void (*link_write)(void *ctx, const uint8_t *data, size_t n);
    void (*servo_write)(void *ctx, const uint8_t *data, size_t n);
} evla_port_t;

typedef struct {
    uint16_t watchdog_ms;     /* 0 = off */
    uint16_t state_period_ms; /* 0 = only on GET_STATE */
    uint16_t servo_period_ms; /* goal write + position read cadence */
    uint8_t servo_ids[EVLA_N_JOINTS];
    uint8_t enable_at_boot;
    /* after this long in HOLDING (watchdog, HOLD, servo fault) torque goes off: 0 = never */
    uint16_t torque_off_ms;
    /* consecutive read cycles with a servo silent before the arm holds: 0 = never */
    uint8_t servo_miss_hold;
    evla_joint_limits_t limits[EVLA_N_JOINTS];
} evla_fw_config_t;

typedef struct {
    evla_port_t port;
    evla_fw_config_t cfg;
    evla_stream_t rx;
    evla_msg_t msg; /* scratch: decoded frame (kept off the stack: ~500 bytes) */
    evla_motion_t mo;
    fts_parser_t servo_rx;

    uint8_t mode;
    uint32_t faults_latched;
    uint16_t tx_seq;
    uint16_t last_seq;
    uint8_t have_seq;
    uint32_t seq_gaps;
    uint64_t last_rx_us;
    uint64_t now_us;
    uint32_t ticks;

    float measured[EVLA_N_JOINTS];
    uint8_t servo_seen_mask;
    uint8_t servo_ever_mask; /* servos that reported at least once since boot */
    uint8_t measured_valid; /* every servo has reported its position at least once */
    uint8_t enable_pending; /* ENABLE (or enable_at_boot) waits for measured_valid */
    uint8_t servo_read_outstanding;
    uint8_t servo_timeout;
    uint32_t servo_timeouts;
    uint8_t servo_misses;    /* consecutive read cycles with a servo silent */
    uint8_t servo_error_id;  /* the first servo that reported a stopping error (0 = none) */
    uint8_t servo_error_bits;
    uint64_t hold_since_us;  /* when HOLDING began: the torque-off clock */
    uint16_t state_countdown;
    uint16_t servo_countdown;
    uint32_t tx_frames;
} evla_fw_t;

void evla_fw_default_config(evla_fw_config_t *cfg);
void evla_fw_init(evla_fw_t *fw, const evla_port_t *port, const evla_fw_config_t *cfg,
                  uint64_t now_us);
/* Bytes from the host link; now_us is the MCU time they arrived (PONG stamps it). */
void evla_fw_link_rx(evla_fw_t *fw, const uint8_t *data, size_t n, uint64_t now_us);
/* Bytes from the servo bus. */
void evla_fw_servo_rx(evla_fw_t *fw, const uint8_t *data, size_t n);
/* The 1 kHz control tick at MCU time now_us. */
void evla_fw_tick(evla_fw_t *fw, uint64_t now_us);
void evla_fw_fill_state(const evla_fw_t *fw, evla_state_t *st);
/* Stop as the host asked or was lost: hold where the arm is (torque off after torque_off_ms). */
void evla_fw_hold(evla_fw_t *fw);

#endif
