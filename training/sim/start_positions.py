"""The recording protocol: clusters of start positions, recovery episodes, the held-out cluster.

Like the reference deployment: the tea bag starts in one of ``clusters`` squares of
``cluster_size_m`` (default 11 of 10x10 cm), ``positions_per_cluster`` normal episodes plus
``recovery_per_cluster`` recovery episodes in each, and one cluster (``val_cluster``) held out
entirely for validation. The squares lie on two arcs around the arm base inside its reach (a
top-down grasp reaches ~0.27 m from the base, slightly tilted ~0.30 m), with the mug to the
arm's right, outside every square. Pure numpy: no mujoco needed to plan or to draw the map.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from edgevla.actors.console.figures import save_figure
from edgevla.training.sim.episode_spec import RECOVERY_KINDS, EpisodeSpec
from edgevla.training.sim.kinematics import HOME_Q, arm_ik
from edgevla.training.sim.scene import BAG_HALF_SIZE_M, MUG_HOME_XY


@dataclass
class ProtocolConfig:
    clusters: int = 11
    positions_per_cluster: int = 10
    recovery_per_cluster: int = 2
    val_cluster: int | None = 6  # None = no held-out cluster
    cluster_size_m: float = 0.10
    seed: int = 0
    # Cluster centres: ``inner_count`` squares on the inner arc, the rest on the outer one.
    inner_radius_m: float = 0.14
    outer_radius_m: float = 0.235
    inner_angles_deg: tuple[float, float] = (-30.0, 80.0)
    outer_angles_deg: tuple[float, float] = (-45.0, 90.0)
    inner_count: int | None = None  # None = proportional to arc radius
    mug_xy: tuple[float, float] = MUG_HOME_XY
    mug_jitter_m: float = 0.01  # normal episodes: mug placed within +-this of its home
    recovery_kinds: tuple[str, ...] = field(default=RECOVERY_KINDS)

    def __post_init__(self) -> None:
        if self.clusters < 1:
            raise ValueError(f"ProtocolConfig.clusters must be >= 1, got {self.clusters}")
        if self.positions_per_cluster < 0 or self.recovery_per_cluster < 0:
            raise ValueError("ProtocolConfig.positions_per_cluster and recovery_per_cluster "
                             "must be >= 0")
        if self.positions_per_cluster + self.recovery_per_cluster < 1:
            raise ValueError("ProtocolConfig: a cluster needs at least one episode")
        if self.val_cluster is not None and not 0 <= self.val_cluster < self.clusters:
            raise ValueError(f"ProtocolConfig.val_cluster must be in [0, {self.clusters - 1}] "
                             f"or None, got {self.val_cluster}")
        if not 0.01 <= self.cluster_size_m <= 0.2:
            raise ValueError("ProtocolConfig.cluster_size_m must be in [0.01, 0.2] m, "
                             f"got {self.cluster_size_m}")
        self.recovery_kinds = tuple(self.recovery_kinds)
        bad = [k for k in self.recovery_kinds if k not in RECOVERY_KINDS]
        if bad or not self.recovery_kinds:
            raise ValueError(f"ProtocolConfig.recovery_kinds must be a non-empty subset of "
                             f"{RECOVERY_KINDS}, got {self.recovery_kinds}")

    @property
    def episodes_per_cluster(self) -> int:
        return self.positions_per_cluster + self.recovery_per_cluster


def grasp_tilt(r_m: float) -> float:
    """Approach tilt from vertical (rad) the expert uses at distance ``r_m`` from the base."""
    # Top-down wherever it reaches: a tilted approach tilts the fingers' closing axis too (the
    # arm has 5 DoF), so one finger would land on the bag; a little tilt only at the far edge.
    return float(np.clip((r_m - 0.25) / 0.05, 0.0, 1.0)) * 0.35


def cluster_centers(cfg: ProtocolConfig) -> np.ndarray:
    """(clusters, 2) centres (x, y) in metres: the inner arc first, then the outer, by angle."""
    n = cfg.clusters
    if cfg.inner_count is None:
        inner = int(round(n * cfg.inner_radius_m / (cfg.inner_radius_m + cfg.outer_radius_m)))
    else:
        inner = cfg.inner_count
    inner = min(max(inner, 0), n)
    centers = []
    for count, radius, (a0, a1) in ((inner, cfg.inner_radius_m, cfg.inner_angles_deg),
                                    (n - inner, cfg.outer_radius_m, cfg.outer_angles_deg)):
        angles = [0.5 * (a0 + a1)] if count == 1 else np.linspace(a0, a1, count)
        for a in angles[:count]:
            t = math.radians(float(a))
            centers.append((radius * math.cos(t), radius * math.sin(t)))
    return np.array(centers, dtype=np.float64)


def reachable(xy: tuple[float, float] | np.ndarray) -> bool:
    """True when the expert can grasp a bag lying at ``xy`` (checked above and at grasp height)."""
    r = math.hypot(float(xy[0]), float(xy[1]))
    tilt = grasp_tilt(r)
    return all(arm_ik((xy[0], xy[1], z), 0.0, tilt) is not None for z in (0.016, 0.08))


def _sample_in_square(rng: np.random.Generator, center: np.ndarray, size: float,
                      tries: int = 200) -> tuple[float, float]:
    for _ in range(tries):
        p = center + rng.uniform(-size / 2, size / 2, 2)
        if reachable(p):
            return float(p[0]), float(p[1])
    raise ValueError(f"no reachable start position in the cluster centred at "
                     f"({center[0]:.3f}, {center[1]:.3f}) m; move it closer to the arm")


def make_protocol(cfg: ProtocolConfig | None = None) -> list[EpisodeSpec]:
    """All episodes of the protocol: train clusters first, then the held-out cluster.

    Episode indices are in that order so that a LeRobot ``splits`` entry can be a range.
    """
    cfg = cfg or ProtocolConfig()
    centers = cluster_centers(cfg)
    specs: list[EpisodeSpec] = []
    recovery_counter = 0
    order = [c for c in range(cfg.clusters) if c != cfg.val_cluster]
    if cfg.val_cluster is not None:
        order.append(cfg.val_cluster)
    for c in order:
        split = "val" if c == cfg.val_cluster else "train"
        rng = np.random.default_rng([cfg.seed, c])
        for k in range(cfg.episodes_per_cluster):
            recovery = k >= cfg.positions_per_cluster
            kind = ""
            if recovery:
                kind = cfg.recovery_kinds[recovery_counter % len(cfg.recovery_kinds)]
                recovery_counter += 1
            bag_xy = _sample_in_square(rng, centers[c], cfg.cluster_size_m)
            yaw = float(rng.uniform(-math.pi / 2, math.pi / 2))
            mug_xy = (cfg.mug_xy[0] + rng.uniform(-cfg.mug_jitter_m, cfg.mug_jitter_m),
                      cfg.mug_xy[1] + rng.uniform(-cfg.mug_jitter_m, cfg.mug_jitter_m))
            bag_z = BAG_HALF_SIZE_M[2]
            arm_q = None
            if kind == "bag_dropped":
                # The bag slips out of the gripper right above its start: it falls from
                # 4-7 cm and lands somewhere near; the arm hovers there with the gripper open.
                bag_z = float(rng.uniform(0.04, 0.07))
                q = arm_ik((bag_xy[0], bag_xy[1], bag_z + 0.025), yaw, grasp_tilt(
                    math.hypot(*bag_xy)))
                if q is not None:
                    arm_q = (*q.tolist(), float(rng.uniform(0.8, 1.2)))
            elif kind == "missed_grasp":
                # The gripper closed 2.5-4 cm beside the bag at grasp height.
                ang = rng.uniform(0, 2 * math.pi)
                off = rng.uniform(0.025, 0.04)
                p = (bag_xy[0] + off * math.cos(ang), bag_xy[1] + off * math.sin(ang), 0.03)
                q = arm_ik(p, yaw, grasp_tilt(math.hypot(p[0], p[1])))
                if q is not None:
                    arm_q = (*q.tolist(), 0.0)
            elif kind == "mug_displaced":
                # The mug was pushed 4-7 cm away from its home (away from the clusters).
                r0 = math.hypot(*cfg.mug_xy)
                a0 = math.atan2(cfg.mug_xy[1], cfg.mug_xy[0])
                for _ in range(100):
                    r = r0 + rng.uniform(-0.04, 0.06)
                    a = a0 + rng.uniform(-0.30, 0.05)
                    cand = (r * math.cos(a), r * math.sin(a))
                    if (0.04 <= math.dist(cand, cfg.mug_xy) <= 0.07
                            and arm_ik((cand[0], cand[1], 0.13), 0.0, 0.0) is not None):
                        mug_xy = cand
                        break
            specs.append(EpisodeSpec(
                index=len(specs), cluster=c, position_index=k, recovery=recovery,
                recovery_kind=kind, split=split, bag_xy=bag_xy, bag_yaw=yaw, bag_z=bag_z,
                mug_xy=(float(mug_xy[0]), float(mug_xy[1])), arm_q=arm_q,
                seed=int(np.random.default_rng([cfg.seed, c, k, 7]).integers(0, 2**31 - 1)),
            ))
    return specs


def check_clusters(specs: list[EpisodeSpec], clusters: list[int] | None) -> None:
    """ValueError naming the clusters a protocol does not have (a typo must not record nothing)."""
    have = sorted({s.cluster for s in specs})
    unknown = sorted(set(clusters or ()) - set(have))
    if unknown:
        raise ValueError(f"cluster(s) {unknown} are not in the protocol; it has {have}")


def select_episodes(specs: list[EpisodeSpec], clusters: list[int] | None = None,
                    per_cluster: int | None = None, limit: int | None = None) -> list[EpisodeSpec]:
    """A subset of a protocol (for quick recordings): some clusters, the first N of each.

    ``per_cluster`` keeps recovery episodes in proportion: it takes normal and recovery episodes
    alternately so that a small subset still contains both kinds. Indices are renumbered.
    """
    out: list[EpisodeSpec] = []
    by_cluster: dict[int, list[EpisodeSpec]] = {}
    for s in specs:
        by_cluster.setdefault(s.cluster, []).append(s)
    check_clusters(specs, clusters)
    for c, eps in by_cluster.items():
        if clusters is not None and c not in clusters:
            continue
        if per_cluster is not None:
            normal = [e for e in eps if not e.recovery]
            recov = [e for e in eps if e.recovery]
            n_rec = min(len(recov), int(round(per_cluster * len(recov) / max(1, len(eps)))))
            if per_cluster >= 2 and recov and n_rec == 0:
                n_rec = 1
            eps = normal[:per_cluster - n_rec] + recov[:n_rec]
        out.extend(eps)
    if limit is not None:
        out = out[:limit]
    return [dataclasses.replace(s, index=i) for i, s in enumerate(out)]


def draw_map(specs: list[EpisodeSpec], cfg: ProtocolConfig, path: str) -> str:
    """PNG map of the clusters and start positions (train blue, held-out orange), top view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    centers = cluster_centers(cfg)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    half = cfg.cluster_size_m / 2
    for c, (cx, cy) in enumerate(centers):
        val = c == cfg.val_cluster
        color = "tab:orange" if val else "tab:blue"
        ax.add_patch(Rectangle((cx - half, cy - half), 2 * half, 2 * half, fill=True,
                               alpha=0.12, color=color))
        ax.add_patch(Rectangle((cx - half, cy - half), 2 * half, 2 * half, fill=False,
                               lw=1.5, color=color))
        ax.text(cx, cy + half + 0.006, f"{c}" + (" (val)" if val else ""), ha="center",
                fontsize=9, color=color)
    for s in specs:
        color = "tab:orange" if s.split == "val" else "tab:blue"
        marker = "x" if s.recovery else "o"
        ax.plot(*s.bag_xy, marker=marker, color=color, ms=5 if s.recovery else 3.5)
        if s.recovery_kind == "mug_displaced":
            ax.plot(*s.mug_xy, marker="+", color="tab:red", ms=7)
    ax.add_patch(Circle(cfg.mug_xy, 0.038, fill=False, color="tab:red", lw=2))
    ax.text(cfg.mug_xy[0], cfg.mug_xy[1] - 0.055, "mug", ha="center", color="tab:red")
    ax.add_patch(Circle((0, 0), 0.045, color="0.2"))
    ax.text(0, -0.07, "arm base", ha="center", fontsize=8)
    for r, ls in ((0.27, "--"), (0.30, ":")):
        t = np.linspace(-math.pi * 0.62, math.pi * 0.62, 200)
        ax.plot(r * np.cos(t), r * np.sin(t), ls, color="0.5", lw=1)
    ax.text(0.0, 0.275, "top-down reach", fontsize=7, color="0.4")
    ax.text(0.0, 0.305, "tilted reach", fontsize=7, color="0.4")
    ax.set_aspect("equal")
    ax.set_xlim(-0.12, 0.36)
    ax.set_ylim(-0.26, 0.36)
    ax.set_xlabel("x (m, arm forward)")
    ax.set_ylabel("y (m, arm left)")
    n_val = sum(s.split == "val" for s in specs)
    n_rec = sum(s.recovery for s in specs)
    ax.set_title(f"{len(specs)} episodes: {len(specs) - n_val} train (blue), {n_val} held-out "
                 f"(orange); o normal, x recovery ({n_rec})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return str(save_figure(fig, path))


__all__ = ["EpisodeSpec", "HOME_Q", "ProtocolConfig", "cluster_centers", "draw_map",
           "grasp_tilt", "make_protocol", "reachable", "select_episodes"]
