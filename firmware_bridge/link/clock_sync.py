"""Host <-> MCU clock model from PING/PONG samples (pure: no I/O, hypothesis-testable).

Each sample is (host send ns, MCU µs stamped on the PING, host receive ns). The MCU stamp is
compared with the midpoint of the host interval; only the fastest round trips are used (their
midpoint is the tightest bound), and with more than ``min_span_s`` of samples a least-squares
line gives the drift as well as the offset:

    t_mcu_ns ~= t_host_ns + offset_ns + drift * (t_host_ns - ref_host_ns)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockEstimate:
    offset_ns: float  # t_mcu - t_host at ref_host_ns
    drift: float  # fractional rate difference (1e-6 = 1 ppm)
    ref_host_ns: int
    n_samples: int
    rtt_p50_ns: float
    rtt_min_ns: float
    residual_ns: float  # RMS misfit of the samples used (a floor on the error)

    @property
    def drift_ppm(self) -> float:
        return self.drift * 1e6

    def host_to_mcu_us(self, t_host_ns: int | np.ndarray) -> np.ndarray:
        t = np.asarray(t_host_ns, dtype=np.int64)
        dt = (t - self.ref_host_ns).astype(np.float64)
        mcu_ns = t.astype(np.float64) + self.offset_ns + self.drift * dt
        return np.round(mcu_ns / 1000.0).astype(np.int64)

    def mcu_to_host_ns(self, t_mcu_us: int | np.ndarray) -> np.ndarray:
        m = np.asarray(t_mcu_us, dtype=np.float64) * 1000.0
        # invert t_mcu = t_host + off + d (t_host - ref): t_host = (t_mcu - off + d ref) / (1 + d)
        host = (m - self.offset_ns + self.drift * self.ref_host_ns) / (1.0 + self.drift)
        return np.round(host).astype(np.int64)


class ClockSync:
    """Keeps the last ``window`` PING/PONG samples and fits the clock model on demand."""

    def __init__(self, window: int = 256, fast_fraction: float = 0.3,
                 min_span_s: float = 2.0) -> None:
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=window)
        self.fast_fraction = fast_fraction
        self.min_span_s = min_span_s
        self.version = 0  # bumps on every change, so callers can cache estimate()

    def __len__(self) -> int:
        return len(self._samples)

    def clear(self) -> None:
        self._samples.clear()
        self.version += 1

    def add(self, t_send_ns: int, t_mcu_us: int, t_recv_ns: int) -> None:
        if t_recv_ns < t_send_ns:
            raise ValueError(f"receive time {t_recv_ns} before send time {t_send_ns}")
        self._samples.append((int(t_send_ns), int(t_mcu_us), int(t_recv_ns)))
        self.version += 1

    def rtts_ns(self) -> np.ndarray:
        return np.array([r - s for s, _, r in self._samples], dtype=np.float64)

    def estimate(self) -> ClockEstimate | None:
        if not self._samples:
            return None
        s = np.array(self._samples, dtype=np.float64)
        send, mcu_us, recv = s[:, 0], s[:, 1], s[:, 2]
        rtt = recv - send
        mid = (send + recv) / 2.0
        y = mcu_us * 1000.0 - mid
        keep = rtt <= np.quantile(rtt, self.fast_fraction)
        if keep.sum() < 6:  # too few samples to be picky
            keep = rtt <= np.quantile(rtt, 0.5)
        if keep.sum() < 2:
            keep = np.ones_like(rtt, dtype=bool)
        span_all = mid.max() - mid.min()
        if keep.sum() >= 6 and np.ptp(mid[keep]) < self.min_span_s * 1e9 <= span_all:
            # the fastest round trips bunched in one part of the window (a burst of explicit
            # pings among slower periodic ones): the fastest of each half instead, so the fit
            # still sees the whole span and with it the drift
            split = (mid.min() + mid.max()) / 2.0
            keep = np.zeros_like(keep)
            for part in (mid <= split, mid > split):
                keep |= part & (rtt <= np.quantile(rtt[part], self.fast_fraction))
        x, yk = mid[keep], y[keep]
        ref = int(np.median(mid))
        span = x.max() - x.min()
        if keep.sum() >= 6 and span >= self.min_span_s * 1e9:
            drift, offset = np.polyfit(x - ref, yk, 1)
        else:
            # too short a span to see drift: the offset alone, robust to the odd late PONG
            drift, offset = 0.0, float(np.median(yk))
        resid = yk - (offset + drift * (x - ref))
        return ClockEstimate(offset_ns=float(offset), drift=float(drift), ref_host_ns=ref,
                             n_samples=int(keep.sum()), rtt_p50_ns=float(np.median(rtt)),
                             rtt_min_ns=float(rtt.min()),
                             residual_ns=float(np.sqrt(np.mean(resid ** 2))))
