/* edgevla M7 link codec: COBS framing, CRC-32/ISO-HDLC, version-1 messages.
 * The byte layout is specified in mcu/PROTOCOL.md; the Python twin is
 * firmware_bridge/link/codec.py and both are checked against the same vectors. */
#ifndef EVLA_PROTO_H
#define EVLA_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define EVLA_VERSION 1u
#define EVLA_N_JOINTS 6
#define EVLA_MAX_RAW 492u          /* header + body + crc */
#define EVLA_MAX_BODY (EVLA_MAX_RAW - 8u)
#define EVLA_MAX_WIRE 496u         /* COBS(raw) + delimiter: one RPMsg payload */
#define EVLA_MAX_ENCODED (EVLA_MAX_WIRE - 1u)
#define EVLA_MAX_WAYPOINTS 14u
#define EVLA_WAYPOINT_SIZE 33u

enum evla_type {
    EVLA_PING = 0x01,
    EVLA_WAYPOINTS = 0x02,
    EVLA_HOLD = 0x03,
    EVLA_ENABLE = 0x04,
    EVLA_DISABLE = 0x05,
    EVLA_LIMITS = 0x06,
    EVLA_CONFIG = 0x07,
    EVLA_GET_STATE = 0x08,
    EVLA_PONG = 0x81,
    EVLA_STATE = 0x82,
    EVLA_ERROR = 0x83,
};

enum evla_wp_flags { EVLA_WP_LINEAR = 0x01, EVLA_WP_RESET = 0x02, EVLA_WP_END = 0x04 };

enum evla_fault {
    EVLA_FAULT_WATCHDOG = 1u << 0,
    EVLA_FAULT_UNDERRUN = 1u << 1,
    EVLA_FAULT_QUEUE_OVERFLOW = 1u << 2,
    EVLA_FAULT_SERVO_TIMEOUT = 1u << 3,
    EVLA_FAULT_LIMIT_CLAMPED = 1u << 4,
    EVLA_FAULT_RX_ERROR = 1u << 5,
    /* a servo reported overload, overheat or overcurrent, or stopped answering for
     * servo_miss_hold read cycles: the arm holds, latched until ENABLE */
    EVLA_FAULT_SERVO_ERROR = 1u << 6,
};

enum evla_mode { EVLA_MODE_DISABLED = 0, EVLA_MODE_RUNNING = 1, EVLA_MODE_HOLDING = 2 };

enum evla_error_code {
    EVLA_E_UNKNOWN_TYPE = 1,
    EVLA_E_BAD_LENGTH = 2,
    EVLA_E_BAD_VERSION = 3,
    EVLA_E_NOT_ENABLED = 4,
    EVLA_E_BAD_VALUE = 5,
    EVLA_E_WATCHDOG = 6,
    EVLA_E_QUEUE_FULL = 7,
};

/* Decoder results; names match the Python FrameError kinds. */
typedef enum {
    EVLA_OK = 0,
    EVLA_ERR_COBS,
    EVLA_ERR_CRC,
    EVLA_ERR_SHORT,
    EVLA_ERR_OVERSIZE,
    EVLA_ERR_VERSION,
    EVLA_ERR_TYPE,
    EVLA_ERR_LENGTH,
    EVLA_ERR_VALUE,
    EVLA_ERR__COUNT
} evla_result_t;

typedef struct {
    uint64_t t_us;
    float pos[EVLA_N_JOINTS];
    uint8_t flags;
} evla_waypoint_t;

typedef struct {
    float min_rad;
    float max_rad;
    float max_vel_rad_s;
    float max_acc_rad_s2;
} evla_joint_limits_t;

typedef struct {
    uint64_t t_mcu_us;
    float measured[EVLA_N_JOINTS];
    float commanded[EVLA_N_JOINTS];
    uint16_t queue_depth;
    uint16_t last_seq;
    uint32_t underruns;
    uint32_t faults;
    uint8_t mode;
    uint32_t late;
    uint32_t duplicates;
    uint32_t rx_frames;
    uint32_t rx_errors;
    uint32_t seq_gaps;
    uint32_t ticks;
} evla_state_t;

typedef struct {
    uint8_t type;
    uint16_t seq;
    union {
        struct { uint64_t t_host_ns; } ping;
        struct { uint8_t count; evla_waypoint_t pts[EVLA_MAX_WAYPOINTS]; } waypoints;
        struct { evla_joint_limits_t joint[EVLA_N_JOINTS]; } limits;
        struct { uint16_t watchdog_ms; uint16_t state_period_ms; } config;
        struct { uint64_t t_host_ns; uint64_t t_mcu_us; } pong;
        evla_state_t state;
        struct { uint8_t code; uint8_t ref_type; uint16_t ref_seq; uint32_t detail; } error;
    } u;
} evla_msg_t;

const char *evla_result_name(evla_result_t r);

uint32_t evla_crc32(const uint8_t *data, size_t n);

/* COBS. encode returns the encoded length (no delimiter) or 0 if out_cap is too small;
 * decode returns the decoded length or -1 on a malformed block / small buffer. */
size_t evla_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t out_cap);
int evla_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t out_cap);

/* Raw frame (header|body|crc) <-> message. decode fills msg->type/seq as soon as the
 * header is known, so a caller can reference them in an ERROR reply. */
evla_result_t evla_decode_raw(const uint8_t *raw, size_t n, evla_msg_t *msg);
size_t evla_encode_raw(const evla_msg_t *msg, uint8_t *raw, size_t cap);

/* One frame between delimiters (COBS-encoded, without the 0x00). */
evla_result_t evla_decode_frame(const uint8_t *enc, size_t n, evla_msg_t *msg);
/* Wire bytes incl. the trailing 0x00; returns 0 if the message does not fit or is invalid. */
size_t evla_encode_frame(const evla_msg_t *msg, uint8_t *out, size_t cap);

/* Streaming decoder: feed bytes one at a time; survives any input. */
typedef struct {
    uint8_t buf[EVLA_MAX_ENCODED];
    uint16_t len;
    uint8_t discarding;
    uint32_t frames;
    uint32_t errors[EVLA_ERR__COUNT];
} evla_stream_t;

void evla_stream_init(evla_stream_t *s);
/* Returns EVLA_OK with *got=1 when msg holds a new frame; an error result when a frame was
 * dropped (counted in s->errors); EVLA_OK with *got=0 otherwise. */
evla_result_t evla_stream_push(evla_stream_t *s, uint8_t byte, evla_msg_t *msg, int *got);
uint32_t evla_stream_error_total(const evla_stream_t *s);

/* Canonical one-line rendering (tests only; same text as Python's Frame.canonical()). */
int evla_format_msg(const evla_msg_t *msg, char *out, size_t cap);

#endif
