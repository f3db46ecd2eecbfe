"""Is one network's output a scaled copy of another's?"""
from __future__ import annotations

import torch


def scaled_copy_residual(z_a: torch.Tensor, z_b: torch.Tensor) -> float:
    """How far logits ``z_a`` are from a scaled copy of ``z_b``: 0.0 means ``z_a = c · z_b``.

    Both ``(N, K)`` are centred per sample (the softmax ignores a shift), ``c`` is the
    least-squares scale, and the result is ``||z_a - c z_b|| / ||z_a||``. Two distilled
    students that are one network with its logits multiplied by T (head scaling from a
    shared seed) give 0 up to float error; independently trained networks give tenths.
    """
    a = (z_a - z_a.mean(1, keepdim=True)).double().flatten()
    b = (z_b - z_b.mean(1, keepdim=True)).double().flatten()
    if float(b @ b) == 0.0 or float(a @ a) == 0.0:
        return 0.0 if float(a @ a) == float(b @ b) == 0.0 else 1.0
    c = (a @ b) / (b @ b)
    return float(torch.linalg.vector_norm(a - c * b) / torch.linalg.vector_norm(a))
