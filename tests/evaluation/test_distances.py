"""Distortion norms of perturbations: L0 (count and fraction), L2, Linf."""

from __future__ import annotations

import math

import pytest
import torch

from defdistill.evaluation.distances import l0, l0_fraction, l2, linf


def test_distortions_on_hand_built_tensors() -> None:
    delta = torch.tensor(
        [
            [[0.0, 0.5], [-0.25, 0.0]],
            [[0.0, 0.0], [0.0, 0.0]],
            [[1.0, -1.0], [1.0, -1e-7]],
        ]
    )
    assert l0(delta).tolist() == [2, 0, 4]
    assert l0(delta, tol=1e-6).tolist() == [2, 0, 3]
    torch.testing.assert_close(l0_fraction(delta), torch.tensor([0.5, 0.0, 1.0]))
    torch.testing.assert_close(l0_fraction(delta, tol=1e-6), torch.tensor([0.5, 0, 0.75]))
    torch.testing.assert_close(l2(delta), torch.tensor([math.sqrt(0.3125), 0.0, math.sqrt(3.0)]))
    torch.testing.assert_close(linf(delta), torch.tensor([0.5, 0.0, 1.0]))
    with pytest.raises(ValueError):
        l2(torch.zeros(3))
