/* Waypoint queue, interpolation and per-joint limiting: the pure part of the 1 kHz loop.
 * No I/O, no clock reads: the caller passes the MCU time of each tick (copper-style), which
 * is what lets tests replay a stream tick by tick. */
#ifndef EVLA_MOTION_H
#define EVLA_MOTION_H

#include <stdint.h>

#include "evla_proto.h"

#define EVLA_QUEUE_CAP 128u

typedef enum { EVLA_WP_ADDED = 0, EVLA_WP_LATE, EVLA_WP_DUPLICATE, EVLA_WP_FULL } evla_wp_result_t;

typedef struct {
    evla_waypoint_t q[EVLA_QUEUE_CAP]; /* ring, sorted by t_us from head */
    uint16_t head;
    uint16_t count;

    /* Segment start: the last waypoint passed (or where we stood when a plan began). */
    uint64_t anchor_t_us;
    float anchor_pos[EVLA_N_JOINTS];
    float anchor_tangent[EVLA_N_JOINTS]; /* rad/s, for cubic Hermite */
    uint8_t anchor_flags;

    uint8_t streaming;       /* waypoints were being consumed and the last lacked END */
    uint8_t underrun_active; /* ran dry while streaming (live fault) */
    uint8_t holding;
    uint8_t clamped;         /* a target was clamped since the last clear (latched) */

    float hold_target[EVLA_N_JOINTS];
    float target[EVLA_N_JOINTS];      /* interpolated target of the last tick (pre-limit) */
    float prev_target[EVLA_N_JOINTS];
    float cmd[EVLA_N_JOINTS];         /* limited command (the output) */
    float vel[EVLA_N_JOINTS];         /* rad/s of the command */
    evla_joint_limits_t lim[EVLA_N_JOINTS];

    uint32_t late;
    uint32_t duplicates;
    uint32_t overflows;
    uint32_t underruns;
} evla_motion_t;

void evla_motion_default_limits(evla_joint_limits_t lim[EVLA_N_JOINTS]);
void evla_motion_init(evla_motion_t *m, const evla_joint_limits_t lim[EVLA_N_JOINTS]);
/* Stand still at pos (ENABLE, DISABLE): queue cleared, velocity zero, not holding. */
void evla_motion_reset(evla_motion_t *m, const float pos[EVLA_N_JOINTS], uint64_t now_us);
void evla_motion_set_limits(evla_motion_t *m, const evla_joint_limits_t lim[EVLA_N_JOINTS]);
evla_wp_result_t evla_motion_push(evla_motion_t *m, const evla_waypoint_t *w, uint64_t now_us);
/* Drop the plan and decelerate to rest at the stopping point. */
void evla_motion_hold(evla_motion_t *m);
/* One control tick at now_us, dt_s seconds after the previous one. */
void evla_motion_step(evla_motion_t *m, uint64_t now_us, float dt_s);

/* One joint of the limiter, exposed for tests: moves *cmd towards target with |v| <= vmax,
 * |dv/dt| <= amax and a braking bound; returns 1 if target had to be clamped to [min,max]. */
int evla_limit_joint(float *cmd, float *vel, float target, float target_vel,
                     const evla_joint_limits_t *lim, float dt_s);

#endif
