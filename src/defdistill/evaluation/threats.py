"""Threat models and target modes, each defined once.

A threat model is a norm and a budget ε (RobustBench's convention). The standard budgets
of the field, for inputs in [0, 1]:

* MNIST-like greyscale images: L∞ 0.3, the budget of Madry et al. 2018 (arXiv:1706.06083)
  and of the MNIST evaluations of AutoAttack (Croce & Hein 2020, arXiv:2003.01690), with
  0.1 as a second point; L2 2.0, among the L2 radii MNIST evaluations report (FAB, Croce &
  Hein 2019, arXiv:1907.02044, 1 to 2.5), not a leaderboard's standard.
* colour images (CIFAR-10): L∞ 8/255 (Madry et al. 2018; RobustBench's CIFAR-10 L∞
  leaderboard, Croce et al. 2021, arXiv:2010.09670), 2/255 as a second point; L2 0.5
  (RobustBench's CIFAR-10 L2 leaderboard, AutoAttack).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from defdistill.names import Norm, TargetMode

__all__ = ["COLOUR", "GREYSCALE", "Budgets", "Norm", "TargetMode", "ThreatModel", "standard_budgets"]


@dataclass(frozen=True)
class ThreatModel:
    """A norm and a budget: the perturbations an attacker may add."""

    norm: Norm
    eps: float

    def __str__(self) -> str:
        return f"{'Linf' if self.norm is Norm.LINF else 'L2'} {self.eps:.3g}"


@dataclass(frozen=True)
class Budgets:
    """The standard budgets of one kind of data; the last L∞ budget is the primary one."""

    linf: tuple[float, ...]
    l2: float

    @property
    def primary(self) -> ThreatModel:
        """The budget every comparison of the reproduction and the audit's verdict uses."""
        return ThreatModel(Norm.LINF, self.linf[-1])

    def to_dict(self) -> dict[str, object]:
        return {Norm.LINF: self.linf, Norm.L2: self.l2}


GREYSCALE = Budgets(linf=(0.1, 0.3), l2=2.0)
COLOUR = Budgets(linf=(2 / 255, 8 / 255), l2=0.5)


def standard_budgets(x: torch.Tensor) -> Budgets:
    """The standard budgets for images ``x`` ``(N, C, H, W)``: greyscale if one channel."""
    return GREYSCALE if x.shape[1] == 1 else COLOUR
