/* Host port: the firmware as a Linux process. The link is a pseudo-terminal (what the
 * bridge opens with pyserial, like a UART or /dev/ttyRPMSG*); the servo bus is a second pty
 * where a Feetech bus emulator (firmware_bridge.feetech.FeetechBusSim) answers, an
 * in-process servo model with --servo loopback, or a real Feetech bus on a USB serial
 * adapter with --servo-device (raw 8N1 at 1 Mbaud: the arm without an M7). A 1 kHz loop on
 * CLOCK_MONOTONIC drives evla_fw_tick; link bytes are handled as soon as poll() sees them.
 * With --torque-off-ms, SIGTERM/SIGINT stop like a lost host: hold, then torque off after
 * that long, then exit. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "evla_fw.h"
#include "evla_servo_sim.h"

typedef struct {
    int fd;         /* master side, ours */
    int slave_fd;   /* kept open so the master never sees EIO/HUP when the peer closes */
    char path[128]; /* slave path for the peer */
} pty_t;

typedef struct {
    pty_t link;
    pty_t servo;
    int servo_loopback;
    int servo_device; /* servo.fd is a real serial port, not a pty master */
    evla_servo_sim_t sim;
    uint64_t tx_dropped;
} host_t;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static int64_t g_t0_ns;
static double g_drift; /* simulated MCU clock drift (fraction), for clock-sync tests */
static int64_t g_offset_us;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t mcu_us_at(int64_t host_ns)
{
    double dt = (double)(host_ns - g_t0_ns);
    return (uint64_t)(g_offset_us + (int64_t)(dt * (1.0 + g_drift) / 1000.0));
}

static int open_pty(pty_t *p)
{
    p->fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (p->fd < 0 || grantpt(p->fd) || unlockpt(p->fd))
        return -1;
    const char *name = ptsname(p->fd);
    if (!name)
        return -1;
    snprintf(p->path, sizeof p->path, "%s", name);
    p->slave_fd = open(p->path, O_RDWR | O_NOCTTY);
    if (p->slave_fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(p->slave_fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(p->slave_fd, TCSANOW, &t);
    }
    fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

/* A real servo bus: the USB serial adapter in raw 8N1 at 1 Mbaud (the Feetech STS default). */
static int open_serial(pty_t *p, const char *path)
{
    snprintf(p->path, sizeof p->path, "%s", path);
    p->slave_fd = -1;
    p->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (p->fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(p->fd, &t) != 0)
        return -1;
    cfmakeraw(&t);
    t.c_cflag &= ~(tcflag_t)(CSTOPB | PARENB | CRTSCTS);
    t.c_cflag |= CLOCAL | CREAD | CS8;
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, B1000000) != 0 || cfsetospeed(&t, B1000000) != 0 ||
        tcsetattr(p->fd, TCSANOW, &t) != 0)
        return -1;
    tcflush(p->fd, TCIOFLUSH);
    return 0;
}

static void write_all_nb(host_t *h, int fd, const uint8_t *d, size_t n)
{
    while (n) {
        ssize_t w = write(fd, d, n);
        if (w > 0) {
            d += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        /* Nobody is reading (buffer full): drop, like a UART with no listener. */
        h->tx_dropped += n;
        return;
    }
}

static void link_write(void *ctx, const uint8_t *d, size_t n)
{
    host_t *h = ctx;
    write_all_nb(h, h->link.fd, d, n);
}

static void servo_write(void *ctx, const uint8_t *d, size_t n)
{
    host_t *h = ctx;
    if (h->servo_loopback)
        evla_servo_sim_rx(&h->sim, d, n);
    else
        write_all_nb(h, h->servo.fd, d, n);
}

static int make_symlink(const char *target, const char *link)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", link, (int)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0)
        return -1;
    return rename(tmp, link); /* atomic: a reconnecting peer never sees a missing link */
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [options]\n"
            "  --link-symlink PATH    also expose the link pty at PATH (stable across restarts)\n"
            "  --servo-symlink PATH   same for the servo bus pty\n"
            "  --servo pty|loopback   servo bus on a pty (default) or simulated in-process\n"
            "  --servo-device PATH    the real Feetech bus on a serial port (1 Mbaud, 8N1)\n"
            "  --torque-off-ms N      torque off after N ms holding; SIGTERM holds first (0 = never)\n"
            "  --servo-miss-hold N    hold after N read cycles with a servo silent (0 = never)\n"
            "  --watchdog-ms N        host silence before hold (default 500, 0 = off)\n"
            "  --state-period-ms N    STATE report period (default 10, 0 = on request)\n"
            "  --servo-period-ms N    servo write/read period (default 10)\n"
            "  --limits MIN,MAX,VEL,ACC  the same limits for every joint\n"
            "  --enable-at-boot       start RUNNING instead of DISABLED\n"
            "  --clock-offset-us N    MCU clock offset (tests of clock sync)\n"
            "  --clock-drift-ppm X    MCU clock drift (tests of clock sync)\n"
            "  --run-seconds S        exit after S seconds (default: until SIGTERM/SIGINT)\n"
            "Prints 'LINK <pty>' and 'SERVO <pty|loopback>' on stdout once ready.\n",
            argv0);
}

int main(int argc, char **argv)
{
    static host_t h;
    static evla_fw_t fw;
    evla_fw_config_t cfg;
    evla_fw_default_config(&cfg);
    const char *link_sym = NULL, *servo_sym = NULL, *servo_dev = NULL;
    double run_s = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (!strcmp(a, "--enable-at-boot")) {
            cfg.enable_at_boot = 1;
            continue;
        }
        if (!v) {
            usage(argv[0]);
            return 2;
        }
        i++;
        if (!strcmp(a, "--link-symlink")) link_sym = v;
        else if (!strcmp(a, "--servo-symlink")) servo_sym = v;
        else if (!strcmp(a, "--servo")) h.servo_loopback = !strcmp(v, "loopback");
        else if (!strcmp(a, "--servo-device")) servo_dev = v;
        else if (!strcmp(a, "--torque-off-ms")) cfg.torque_off_ms = (uint16_t)atoi(v);
        else if (!strcmp(a, "--servo-miss-hold")) cfg.servo_miss_hold = (uint8_t)atoi(v);
        else if (!strcmp(a, "--watchdog-ms")) cfg.watchdog_ms = (uint16_t)atoi(v);
        else if (!strcmp(a, "--state-period-ms")) cfg.state_period_ms = (uint16_t)atoi(v);
        else if (!strcmp(a, "--servo-period-ms")) cfg.servo_period_ms = (uint16_t)atoi(v);
        else if (!strcmp(a, "--clock-offset-us")) g_offset_us = atoll(v);
        else if (!strcmp(a, "--clock-drift-ppm")) g_drift = atof(v) * 1e-6;
        else if (!strcmp(a, "--run-seconds")) run_s = atof(v);
        else if (!strcmp(a, "--limits")) {
            float lo, hi, vel, acc;
            if (sscanf(v, "%f,%f,%f,%f", &lo, &hi, &vel, &acc) != 4 || !(lo <= hi) ||
                !(vel > 0) || !(acc > 0)) {
                fprintf(stderr, "--limits: expected MIN,MAX,VEL,ACC with MIN<=MAX, VEL>0, "
                                "ACC>0; got %s\n", v);
                return 2;
            }
            for (int j = 0; j < EVLA_N_JOINTS; j++) {
                cfg.limits[j].min_rad = lo;
                cfg.limits[j].max_rad = hi;
                cfg.limits[j].max_vel_rad_s = vel;
                cfg.limits[j].max_acc_rad_s2 = acc;
            }
        } else {
            usage(argv[0]);
            return 2;
        }
    }

    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test or launcher that started us */
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    if (servo_dev) {
        h.servo_loopback = 0;
        h.servo_device = 1;
        if (open_serial(&h.servo, servo_dev) != 0) {
            fprintf(stderr, "--servo-device %s: cannot open it as a 1 Mbaud serial port (%s)\n",
                    servo_dev, strerror(errno));
            return 2;
        }
    }
    if (open_pty(&h.link) != 0 || (!h.servo_loopback && !h.servo_device && open_pty(&h.servo) != 0)) {
        perror("pty");
        return 1;
    }
    if (h.servo_loopback)
        evla_servo_sim_init(&h.sim, cfg.servo_ids);
    if ((link_sym && make_symlink(h.link.path, link_sym) != 0) ||
        (servo_sym && !h.servo_loopback && !h.servo_device &&
         make_symlink(h.servo.path, servo_sym) != 0)) {
        perror("symlink");
        return 1;
    }

    g_t0_ns = mono_ns();
    evla_port_t port = {&h, link_write, servo_write};
    evla_fw_init(&fw, &port, &cfg, mcu_us_at(g_t0_ns));
    printf("LINK %s\nSERVO %s\n", h.link.path, h.servo_loopback ? "loopback" : h.servo.path);
    fflush(stdout);

    const int64_t period_ns = 1000000000LL / EVLA_TICK_HZ;
    int64_t next_tick = g_t0_ns + period_ns;
    int64_t end_ns = run_s > 0 ? g_t0_ns + (int64_t)(run_s * 1e9) : 0;
    uint64_t late_ticks = 0;
    uint8_t buf[4096];
    int stopping = 0;

    for (;;) {
        int64_t now = mono_ns();
        if (end_ns && now >= end_ns)
            break;
        if (g_stop && !stopping) {
            /* Stopped like a lost host: hold, and let the torque-off clock run out. */
            if (!cfg.torque_off_ms || h.servo_loopback || fw.mode == EVLA_MODE_DISABLED)
                break;
            stopping = 1;
            evla_fw_hold(&fw);
            end_ns = now + ((int64_t)cfg.torque_off_ms + 50) * 1000000LL;
            fprintf(stderr, "edgevla-fw(host): stopping: holding, torque off in %u ms\n",
                    (unsigned)cfg.torque_off_ms);
        }
        if (stopping && fw.mode == EVLA_MODE_DISABLED) {
            tcdrain(h.servo.fd); /* the torque-off packet is on the wire before we exit */
            break;
        }
        if (now >= next_tick) {
            /* Catch up tick by tick (each at its nominal time) unless we fell far behind. */
            if (now - next_tick > 100 * period_ns) {
                late_ticks += (uint64_t)((now - next_tick) / period_ns);
                next_tick = now - (now - next_tick) % period_ns;
            }
            while (next_tick <= now) {
                evla_fw_tick(&fw, mcu_us_at(next_tick));
                if (h.servo_loopback) {
                    evla_servo_sim_step_1ms(&h.sim);
                    size_t n = evla_servo_sim_take(&h.sim, buf, sizeof buf);
                    if (n)
                        evla_fw_servo_rx(&fw, buf, n);
                }
                next_tick += period_ns;
            }
            continue;
        }
        struct pollfd pfd[2] = {{h.link.fd, POLLIN, 0}, {h.servo_loopback ? -1 : h.servo.fd, POLLIN, 0}};
        int64_t wait_ns = next_tick - now;
        struct timespec ts = {(time_t)(wait_ns / 1000000000LL), (long)(wait_ns % 1000000000LL)};
        int r = ppoll(pfd, 2, &ts, NULL);
        if (r <= 0)
            continue;
        if (pfd[0].revents & POLLIN) {
            ssize_t n = read(h.link.fd, buf, sizeof buf);
            if (n > 0)
                evla_fw_link_rx(&fw, buf, (size_t)n, mcu_us_at(mono_ns()));
        }
        if (pfd[1].revents & POLLIN) {
            ssize_t n = read(h.servo.fd, buf, sizeof buf);
            if (n > 0)
                evla_fw_servo_rx(&fw, buf, (size_t)n);
        }
    }
    if (link_sym)
        unlink(link_sym);
    if (servo_sym && !h.servo_loopback && !h.servo_device)
        unlink(servo_sym);
    fprintf(stderr, "edgevla-fw(host): %lu ticks, %lu late ticks skipped, %lu rx frames, "
                    "%lu rx errors, %lu tx bytes dropped\n",
            (unsigned long)fw.ticks, (unsigned long)late_ticks, (unsigned long)fw.rx.frames,
            (unsigned long)evla_stream_error_total(&fw.rx), (unsigned long)h.tx_dropped);
    return 0;
}
