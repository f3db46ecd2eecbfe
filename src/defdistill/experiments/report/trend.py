"""A monotone trend across conditions measured once each: Kendall's rank correlation τ with
its exact two-sided p-value under independence (Kendall 1938, "A new measure of rank
correlation", Biometrika 30:81).

The report reads the teachers' soft-label entropy against T with it: one network per
temperature, so the test is over temperatures (pure Python: the report imports no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def _discordance_counts(n: int) -> list[int]:
    """How many orderings of ``n`` distinct values have each number of discordant pairs
    (inversions), 0 to n(n-1)/2: the Mahonian numbers, Kendall's exact null distribution."""
    counts = [1]
    for m in range(2, n + 1):  # inserting the m-th value adds 0 to m - 1 inversions
        counts = [sum(counts[max(0, k - m + 1):k + 1]) for k in range(len(counts) + m - 1)]
    return counts


@dataclass(frozen=True)
class RankTrend:
    """Kendall's τ between ``x`` and ``y`` and its exact two-sided p-value.

    The null hypothesis: ``y`` is unrelated to ``x``, so each of the n! orderings of ``y``
    against ``x`` is equally likely; the p-value is the fraction of them whose |τ| is at least
    the observed one (with n = 5 distinct values the smallest possible is 2/120 = 0.017).

    Attributes:
        tau: (concordant − discordant pairs) / all pairs, in [−1, 1].
        p_value: exact two-sided p-value under the null.
        n: how many pairs of values.
    """

    tau: float
    p_value: float
    n: int

    @classmethod
    def of(cls, x: Sequence[float], y: Sequence[float]) -> RankTrend:
        """τ and its p-value for paired values.

        Raises:
            ValueError: fewer than 2 pairs, lengths that differ, or tied values (the exact
                distribution is that of distinct values).
        """
        n = len(x)
        if n != len(y) or n < 2:
            raise ValueError(f"need two sequences of the same length >= 2, got {len(x)} and {len(y)}")
        if len(set(x)) < n or len(set(y)) < n:
            raise ValueError("Kendall's exact test needs distinct values; got ties")
        pairs = n * (n - 1) // 2
        discordant = sum((x[i] - x[j]) * (y[i] - y[j]) < 0 for i in range(n) for j in range(i + 1, n))
        score = pairs - 2 * discordant
        counts = _discordance_counts(n)
        extreme = sum(c for k, c in enumerate(counts) if abs(pairs - 2 * k) >= abs(score))
        return cls(score / pairs, extreme / math.factorial(n), n)
