"""Offline transition datasets held as tensors on the training device."""

from __future__ import annotations

import numpy as np
import torch

KEYS = ("observations", "actions", "rewards", "next_observations", "masks")


class OfflineDataset:
    """Transitions (s, a, r, s', mask) sampled uniformly with a seeded generator (saved for resume)."""

    def __init__(self, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu", seed: int = 0):
        missing = [k for k in KEYS if k not in arrays]
        if missing:
            raise ValueError(f"dataset is missing {missing}; it needs {list(KEYS)}")
        self.device = torch.device(device)
        self.tensors = {k: torch.as_tensor(np.asarray(arrays[k]), dtype=torch.float32).to(self.device) for k in KEYS}
        self.size = self.tensors["observations"].shape[0]
        if any(t.shape[0] != self.size for t in self.tensors.values()):
            raise ValueError("all dataset arrays must have the same number of rows")
        self.generator = torch.Generator(self.device).manual_seed(seed)

    @property
    def obs_dim(self) -> int:
        return self.tensors["observations"].shape[1]

    @property
    def action_dim(self) -> int:
        return self.tensors["actions"].shape[1]

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(self.size, (batch_size,), generator=self.generator, device=self.device)
        return {k: t[idx] for k, t in self.tensors.items()}

    def __len__(self) -> int:
        return self.size
