"""Small synthetic image data sets that a network learns in seconds."""

from __future__ import annotations

import numpy as np
import torch

from defdistill.data import Dataset


def make_synthetic(
    n_train: int = 600, n_test: int = 200, num_classes: int = 3, channels: int = 1,
    size: int = 28, seed: int = 0,
) -> Dataset:
    """Images in [0, 1] whose class is a bright square at a class-specific position."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        x = 0.3 * torch.rand(n, channels, size, size, generator=g)
        cells = int(num_classes**0.5) + 1
        step = size // cells
        for k in range(num_classes):
            r, c = divmod(k, cells)
            x[y == k, :, r * step : r * step + step // 2 + 2, c * step : c * step + step // 2 + 2] += 0.7
        return x.clamp(0, 1), y

    x_tr, y_tr = split(n_train)
    x_te, y_te = split(n_test)
    return Dataset("synthetic", x_tr, y_tr, x_te, y_te, tuple(str(k) for k in range(num_classes)))


def cifar_batch(n: int = 4, seed: int = 0) -> dict:
    """A CIFAR-10 python batch dict (as in ``data_batch_1``) of ``n`` random images."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"synthetic",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
