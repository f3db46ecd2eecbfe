"""How the report words its numbers: a rate with its interval and n, whether two intervals
separate, a count that is never a rounded 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass

from defdistill.experiments.report.columns import ACCURACY, SUCCESS, attack_value
from defdistill.experiments.report.data import (
    fmt,
)
from defdistill.names import AttackId, StatementKind


@dataclass(frozen=True)
class Statement:
    """One sentence of the report and what it is about (code selects by ``kind``, never by text)."""

    kind: StatementKind
    text: str



def success_of(row: dict, attack: AttackId) -> float | None:
    return attack_value(row, attack, SUCCESS)


def accuracy_of(row: dict, attack: AttackId) -> float | None:
    return attack_value(row, attack, ACCURACY)


def pct(value: float | None, spec: str = ".1f") -> str:
    return fmt(None if value is None else 100 * value, spec, "%")


def interval_of(found: dict | None) -> tuple[float, float] | None:
    """``(low, high)`` of an interval dict, None when absent or undefined."""
    if not found or found.get("low") is None or found.get("high") is None:
        return None
    return float(found["low"]), float(found["high"])


def separated(a: dict | None, b: dict | None) -> bool | None:
    """Whether two intervals (Proportion / MeanEstimate dicts) do not overlap; None if either is absent."""
    ia, ib = interval_of(a), interval_of(b)
    if ia is None or ib is None:
        return None
    return ia[1] < ib[0] or ib[1] < ia[0]


def rate_ci(found: dict | None) -> str:
    """``x% [low, high] of n`` for a Proportion dict; ``–`` when absent."""
    if not found or found.get("rate") is None:
        return "–"
    return (f"{100 * found['rate']:.1f}% [{100 * found['low']:.1f}, {100 * found['high']:.1f}] "
            f"of {found['n']}")  # fmt: skip


def intervals_compared(a: dict | None, b: dict | None) -> str:
    """What a reader may conclude from comparing two intervals."""
    found = separated(a, b)
    if found is None:
        return "no interval to compare"
    return ("the 95 % intervals separate" if found
            else "the 95 % intervals overlap: no difference is established")  # fmt: skip


def count_of(found: dict | None) -> str:
    """``k of n`` (``all n`` when every one): never a rounded 100 %."""
    if not found or not found.get("n"):
        return "none measured"
    if found["k"] == 0:
        return f"none of {found['n']}"
    return f"all {found['n']}" if found["k"] == found["n"] else f"{found['k']} of {found['n']}"


def mean_ci(found: dict | None, spec: str = ".2f") -> str:
    """``mean [low, high]`` for a MeanEstimate dict; ``–`` when absent."""
    if not found or found.get("mean") is None:
        return "–"
    return f"{found['mean']:{spec}} [{found['low']:{spec}}, {found['high']:{spec}}]"


def robust_text(row: dict) -> str:
    """``a% [low, high] of n images (b% of the m correctly classified)`` for a model's row."""
    robust = row.get("robust_accuracy") or {}
    u, c = robust.get("unconditional_interval") or {}, robust.get("conditional_interval") or {}
    if u.get("rate") is None:
        return "–"
    return (f"{100 * u['rate']:.1f}% [{100 * u['low']:.1f}, {100 * u['high']:.1f}] of {u['n']} drawn "
            f"images, conditionally {rate_ci(c)} classified correctly")  # fmt: skip


def cw_distance(base: dict, top: dict) -> str:
    """C&W L2's mean distance on ``top`` against ``base``'s: ``with a mean L2 1.3 times the
    baseline's (…; the 95 % intervals separate)``, both means with their intervals where they overlap."""
    a, b = (attack_value(r, AttackId.CW_L2, "mean_l2_interval") for r in (base, top))
    apart = separated(a, b)
    if apart is None:
        means = [attack_value(r, AttackId.CW_L2, "mean_l2") for r in (base, top)]
        return f"with a mean L2 of {fmt(means[1], '.2f')} (baseline {fmt(means[0], '.2f')})"
    if not apart:
        return (f"with a mean L2 of {mean_ci(b)} against the baseline's {mean_ci(a)} "
                f"({intervals_compared(a, b)})")  # fmt: skip
    return (f"with a mean L2 {b['mean'] / a['mean']:.1f} times the baseline's ({mean_ci(b)} against "
            f"{mean_ci(a)}; {intervals_compared(a, b)})")  # fmt: skip
