#include "evla_motion.h"

#include <math.h>
#include <string.h>

#define EVLA_PI_F 3.14159265358979323846f

void evla_motion_default_limits(evla_joint_limits_t lim[EVLA_N_JOINTS])
{
    for (int j = 0; j < EVLA_N_JOINTS; j++) {
        lim[j].min_rad = -EVLA_PI_F;
        lim[j].max_rad = EVLA_PI_F;
        lim[j].max_vel_rad_s = 4.0f;
        lim[j].max_acc_rad_s2 = 40.0f;
    }
}

void evla_motion_init(evla_motion_t *m, const evla_joint_limits_t lim[EVLA_N_JOINTS])
{
    memset(m, 0, sizeof *m);
    memcpy(m->lim, lim, sizeof m->lim);
}

static evla_waypoint_t *at(evla_motion_t *m, uint16_t i)
{
    return &m->q[(uint16_t)((m->head + i) % EVLA_QUEUE_CAP)];
}

static void anchor_here(evla_motion_t *m, uint64_t now_us)
{
    m->anchor_t_us = now_us;
    memcpy(m->anchor_pos, m->cmd, sizeof m->anchor_pos);
    memcpy(m->anchor_tangent, m->vel, sizeof m->anchor_tangent);
    m->anchor_flags = 0;
}

void evla_motion_reset(evla_motion_t *m, const float pos[EVLA_N_JOINTS], uint64_t now_us)
{
    m->head = 0;
    m->count = 0;
    m->streaming = 0;
    m->underrun_active = 0;
    m->holding = 0;
    m->clamped = 0;
    memcpy(m->cmd, pos, sizeof m->cmd);
    memset(m->vel, 0, sizeof m->vel);
    memcpy(m->target, pos, sizeof m->target);
    memcpy(m->prev_target, pos, sizeof m->prev_target);
    anchor_here(m, now_us);
}

void evla_motion_set_limits(evla_motion_t *m, const evla_joint_limits_t lim[EVLA_N_JOINTS])
{
    memcpy(m->lim, lim, sizeof m->lim);
}

evla_wp_result_t evla_motion_push(evla_motion_t *m, const evla_waypoint_t *w, uint64_t now_us)
{
    if (w->flags & EVLA_WP_RESET) {
        m->head = 0;
        m->count = 0;
    }
    if (w->t_us <= now_us) {
        m->late++;
        return EVLA_WP_LATE;
    }
    if (m->count == 0) {
        /* A new plan (or one resumed after running dry) starts from where the command is,
         * with its current velocity as the tangent: no jump, no kink. */
        anchor_here(m, now_us);
        if (m->holding) {
            m->holding = 0;
        }
    }
    /* Insertion from the tail: streams arrive in time order, so this is O(1) in practice. */
    uint16_t i = m->count;
    while (i > 0 && at(m, (uint16_t)(i - 1))->t_us > w->t_us)
        i--;
    if (i > 0 && at(m, (uint16_t)(i - 1))->t_us == w->t_us) {
        *at(m, (uint16_t)(i - 1)) = *w;
        m->duplicates++;
        return EVLA_WP_DUPLICATE;
    }
    if (m->count >= EVLA_QUEUE_CAP) {
        m->overflows++;
        return EVLA_WP_FULL;
    }
    for (uint16_t k = m->count; k > i; k--)
        *at(m, k) = *at(m, (uint16_t)(k - 1));
    *at(m, i) = *w;
    m->count++;
    m->streaming = 1;
    m->underrun_active = 0;
    return EVLA_WP_ADDED;
}

void evla_motion_hold(evla_motion_t *m)
{
    m->head = 0;
    m->count = 0;
    m->streaming = 0;
    m->underrun_active = 0;
    m->holding = 1;
    for (int j = 0; j < EVLA_N_JOINTS; j++) {
        const evla_joint_limits_t *l = &m->lim[j];
        float v = m->vel[j];
        float stop = m->cmd[j] + v * fabsf(v) / (2.0f * l->max_acc_rad_s2);
        if (stop > l->max_rad)
            stop = l->max_rad;
        if (stop < l->min_rad)
            stop = l->min_rad;
        m->hold_target[j] = stop;
    }
}

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

int evla_limit_joint(float *cmd, float *vel, float target, float target_vel,
                     const evla_joint_limits_t *l, float dt_s)
{
    int clamped = 0;
    if (target > l->max_rad) {
        target = l->max_rad;
        target_vel = 0.0f;
        clamped = 1;
    } else if (target < l->min_rad) {
        target = l->min_rad;
        target_vel = 0.0f;
        clamped = 1;
    }
    float vmax = l->max_vel_rad_s, amax = l->max_acc_rad_s2;
    float err = target - *cmd;
    /* Feed-forward the target's own velocity; correct the error no faster than we could
     * brake to it (sqrt(2 a |e|)), so we arrive without overshoot. */
    float vb = sqrtf(2.0f * amax * fabsf(err));
    float corr = clampf(err / dt_s, -vb, vb);
    float vdes = clampf(target_vel + corr, -vmax, vmax);
    float v = *vel + clampf(vdes - *vel, -amax * dt_s, amax * dt_s);
    v = clampf(v, -vmax, vmax); /* limits may have just been lowered: velocity wins */
    float c = *cmd;
    float nc = c + v * dt_s;
    if (nc > l->max_rad) {
        if (c <= l->max_rad) {
            nc = l->max_rad;
            v = (nc - c) / dt_s;
        } else if (v > 0.0f) { /* outside (limits changed): only move back inside */
            nc = c;
            v = 0.0f;
        }
    } else if (nc < l->min_rad) {
        if (c >= l->min_rad) {
            nc = l->min_rad;
            v = (nc - c) / dt_s;
        } else if (v < 0.0f) {
            nc = c;
            v = 0.0f;
        }
    }
    *cmd = nc;
    *vel = v;
    return clamped;
}

static void interpolate(evla_motion_t *m, uint64_t now_us)
{
    const evla_waypoint_t *b = at(m, 0);
    float h_s = (float)(b->t_us - m->anchor_t_us) * 1e-6f;
    float s = (float)(now_us - m->anchor_t_us) * 1e-6f / h_s;
    s = clampf(s, 0.0f, 1.0f);
    if (b->flags & EVLA_WP_LINEAR) {
        for (int j = 0; j < EVLA_N_JOINTS; j++)
            m->target[j] = m->anchor_pos[j] + s * (b->pos[j] - m->anchor_pos[j]);
        return;
    }
    /* Cubic Hermite with Catmull-Rom tangents; zero tangent into an END point. */
    const evla_waypoint_t *c = m->count >= 2 ? at(m, 1) : 0;
    float s2 = s * s, s3 = s2 * s;
    float h00 = 2 * s3 - 3 * s2 + 1, h10 = s3 - 2 * s2 + s, h01 = -2 * s3 + 3 * s2,
          h11 = s3 - s2;
    for (int j = 0; j < EVLA_N_JOINTS; j++) {
        float mb;
        if (c)
            mb = (c->pos[j] - m->anchor_pos[j]) / ((float)(c->t_us - m->anchor_t_us) * 1e-6f);
        else if (b->flags & EVLA_WP_END)
            mb = 0.0f;
        else
            mb = (b->pos[j] - m->anchor_pos[j]) / h_s;
        m->target[j] = h00 * m->anchor_pos[j] + h10 * h_s * m->anchor_tangent[j] +
                       h01 * b->pos[j] + h11 * h_s * mb;
    }
}

void evla_motion_step(evla_motion_t *m, uint64_t now_us, float dt_s)
{
    memcpy(m->prev_target, m->target, sizeof m->target);
    if (m->holding) {
        memcpy(m->target, m->hold_target, sizeof m->target);
    } else {
        while (m->count > 0 && at(m, 0)->t_us <= now_us) {
            evla_waypoint_t a = *at(m, 0);
            m->head = (uint16_t)((m->head + 1u) % EVLA_QUEUE_CAP);
            m->count--;
            for (int j = 0; j < EVLA_N_JOINTS; j++) {
                if (m->count > 0) {
                    const evla_waypoint_t *n = at(m, 0);
                    m->anchor_tangent[j] = (n->pos[j] - m->anchor_pos[j]) /
                                           ((float)(n->t_us - m->anchor_t_us) * 1e-6f);
                } else {
                    m->anchor_tangent[j] = 0.0f;
                }
            }
            m->anchor_t_us = a.t_us;
            memcpy(m->anchor_pos, a.pos, sizeof m->anchor_pos);
            m->anchor_flags = a.flags;
        }
        if (m->count == 0) {
            memcpy(m->target, m->anchor_pos, sizeof m->target);
            if (m->streaming) {
                m->streaming = 0;
                if (!(m->anchor_flags & EVLA_WP_END)) {
                    m->underruns++;
                    m->underrun_active = 1;
                }
            }
        } else {
            interpolate(m, now_us);
        }
    }
    for (int j = 0; j < EVLA_N_JOINTS; j++) {
        float tv = (m->target[j] - m->prev_target[j]) / dt_s;
        if (m->holding || m->count == 0)
            tv = 0.0f;
        if (evla_limit_joint(&m->cmd[j], &m->vel[j], m->target[j], tv, &m->lim[j], dt_s))
            m->clamped = 1;
    }
}
