"""The start positions an evaluation rolls out: new draws of the recording protocol, spread over
the training clusters (``test``) and the held-out one (``val``)."""

from __future__ import annotations

import dataclasses
import math

from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol

SPLITS = ("test", "val", "global")


def eval_specs(n_test: int, n_val: int, seed: int, protocol=None) -> list:
    """`n_test` starts spread round-robin over the training clusters, `n_val` in the held-out one."""
    base = protocol or ProtocolConfig()
    n_train_clusters = base.clusters - (1 if base.val_cluster is not None else 0)
    per_cluster = max(math.ceil(n_test / max(1, n_train_clusters)), n_val, 1)
    cfg = dataclasses.replace(base, seed=seed, positions_per_cluster=per_cluster, recovery_per_cluster=0)
    specs = make_protocol(cfg)
    by_cluster: dict[int, list] = {}
    for s in specs:
        if s.split == "train":
            by_cluster.setdefault(s.cluster, []).append(s)
    test: list = []
    k = 0
    while len(test) < n_test:
        for c in sorted(by_cluster):
            if len(test) < n_test and k < len(by_cluster[c]):
                test.append(by_cluster[c][k])
        k += 1
    val = [s for s in specs if s.split == "val"][:n_val]
    return test + val
