"""Intervals for the numbers an evaluation reports.

* :class:`Proportion` — ``k`` of ``n`` with its 95 % Wilson score interval (Wilson 1927,
  "Probable inference, the law of succession, and statistical inference", JASA 22:209),
  the interval recommended over the normal approximation for small ``n`` and rates near
  0 or 1 (Brown, Cai & DasGupta 2001, Statistical Science 16:101).
* :class:`MeanEstimate` — a mean over images with a percentile bootstrap interval
  (Efron & Tibshirani 1993, ch. 13), resampled with a seeded generator so that the same
  values always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

Z_95 = 1.959963984540054  # the standard normal's 97.5 % quantile
BOOTSTRAP_RESAMPLES = 2000


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials; ``(nan, nan)`` for n = 0.

    Raises:
        ValueError: ``k`` or ``n`` negative, or ``k > n``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # the exact bounds at k = 0 and k = n; rounding must not leave them a hair off
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` (successes, correct images, ...) with its 95 % Wilson interval.

    Attributes:
        k: how many.
        n: out of how many.
        rate: ``k / n`` (nan when ``n == 0``).
        low, high: the interval's bounds.
    """

    k: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, k: int, n: int) -> Proportion:
        """``k`` of ``n`` with its interval."""
        k, n = int(k), int(n)
        low, high = wilson_interval(k, n)
        return cls(k, n, k / n if n else math.nan, low, high)

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> Proportion:
        """The fraction of ``True`` in a boolean mask."""
        return cls.of(int(mask.sum()), mask.numel())

    def separated_from(self, other: Proportion) -> bool:
        """Whether the two intervals do not overlap (a conservative test of a difference)."""
        return self.high < other.low or other.high < self.low

    def complement(self) -> Proportion:
        """``n - k`` of ``n`` (accuracy from a success rate, and back)."""
        return Proportion.of(self.n - self.k, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {key: None if isinstance(v, float) and math.isnan(v) else v
                for key, v in asdict(self).items()}  # fmt: skip


@dataclass(frozen=True)
class MeanEstimate:
    """A mean over ``n`` values with a 95 % percentile bootstrap interval.

    Attributes:
        mean: the sample mean (nan when ``n == 0``).
        n: how many values.
        low, high: the interval's bounds (equal to the mean when ``n == 1``).
    """

    mean: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values: torch.Tensor | Sequence[float], seed: int = 0,
           resamples: int = BOOTSTRAP_RESAMPLES) -> MeanEstimate:  # fmt: skip
        """The mean of ``values`` and its bootstrap interval, resampled with ``seed``."""
        v = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
        n = v.numel()
        if n == 0:
            return cls(math.nan, 0, math.nan, math.nan)
        generator = torch.Generator().manual_seed(seed)
        means = v[torch.randint(n, (resamples, n), generator=generator)].mean(1)
        low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
        return cls(float(v.mean()), n, low, high)

    def separated_from(self, other: MeanEstimate) -> bool:
        """Whether the two intervals do not overlap."""
        return self.high < other.low or other.high < self.low

    def to_dict(self) -> dict[str, Any]:
        return {key: None if isinstance(v, float) and math.isnan(v) else v
                for key, v in asdict(self).items()}  # fmt: skip


def share(fraction: float) -> str:
    """``fraction`` as a percentage that reads 0 % or 100 % only when it is exactly that
    (0.996 is ``99.6%``, never a rounded ``100%``)."""
    for digits in range(4):
        text = f"{fraction:.{digits}%}"
        if not 0 < fraction < 1 or 0 < float(text[:-1]) < 100:
            return text
    return "under 0.001%" if fraction < 0.5 else "over 99.999%"
