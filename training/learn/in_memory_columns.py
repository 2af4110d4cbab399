"""Serve a LeRobot dataset's small numeric columns from memory, so action windows stop decoding
whole rows (images included) for a few floats."""

from __future__ import annotations


class _InMemoryColumns:
    """Stands in for ``LeRobotDataset.hf_dataset``: numeric columns from memory, the rest as is.

    lerobot 0.4.4 reads an action window as ``hf_dataset[key][indices]``. With datasets 4.x
    that formats whole rows, so a 100-step ACT window decodes 100 rows x 3 camera PNGs only to
    keep 600 floats: measured 78 ms per item here, the data worker's whole CPU share. Serving the
    small numeric columns from one tensor makes the same query ~0.1 ms; images, single rows and
    everything else still go through the real dataset. Same values (tests/training/test_train.py).
    """

    def __init__(self, hf_dataset, keys: list[str]) -> None:
        import torch

        self._hf = hf_dataset
        self._cols = {k: torch.stack(list(hf_dataset.select_columns([k]).with_format("torch")[k]))
                      for k in keys}

    def __getitem__(self, key):
        if isinstance(key, str) and key in self._cols:
            return _ColumnRows(self._cols[key])
        return self._hf[key]

    def __len__(self) -> int:
        return len(self._hf)

    def __getattr__(self, name: str):
        return getattr(self._hf, name)


class _ColumnRows:
    def __init__(self, values) -> None:
        self._values = values

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return list(self._values[idx])  # lerobot torch.stack()s a sequence of row tensors
        return self._values[idx]


def serve_numeric_columns_from_memory(dataset) -> list[str]:
    """Install `_InMemoryColumns` for the columns the dataset queries as windows; returns them."""
    keys = sorted(k for k in (dataset.delta_indices or {}) if k not in dataset.meta.video_keys
                  and k not in dataset.meta.camera_keys)
    if keys and not isinstance(dataset.hf_dataset, _InMemoryColumns):
        dataset.hf_dataset = _InMemoryColumns(dataset.hf_dataset, keys)
    return keys
