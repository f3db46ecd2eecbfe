"""What the teachers' soft labels show epoch by epoch (Papernot et al. 2016, Section IV.B: the
entropy of the teacher's softmax at T is the mechanism the paper describes), read within what
one network per temperature can establish.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from defdistill.experiments.report.trend import RankTrend

SETTLED = 0.10  # largest fitted change of the entropy over the last half of a settled curve
TEACHER_SPREAD = 0.03  # teachers further apart in held-out accuracy did not learn alike
TREND_TEMPERATURES = 5  # the fewest for which Kendall's exact two-sided p can fall below 0.05
TREND_P = 0.05


def _log_slope(history: list[dict]) -> float:
    """The least-squares slope of the log of the entropy at T against the epoch; NaN from a
    single epoch (no trend can be fitted)."""
    if len(history) < 2:
        return math.nan
    epochs = [h["epoch"] for h in history]
    logs = [math.log(max(h["entropy_at_t"], 1e-30)) for h in history]
    mean_epoch, mean_log = sum(epochs) / len(epochs), sum(logs) / len(logs)
    spread = sum((e - mean_epoch) ** 2 for e in epochs)
    return sum((e - mean_epoch) * (v - mean_log) for e, v in zip(epochs, logs, strict=True)) / spread


@dataclass(frozen=True)
class _Tail:
    """A teacher's entropy at T at the end of its training: its level and range over the last
    fifth of its epochs (at least 3), its trend over the last half (at least 3)."""

    temperature: float
    epochs: tuple[int, int]  # the last fifth
    low: float
    high: float
    level: float  # geometric mean over the last fifth
    trend_from: int  # the first epoch of the last half
    change: float  # fitted relative change over the last half (least squares on the log)
    accuracy: float  # held-out accuracy at the last epoch

    @classmethod
    def of(cls, temperature: float, history: list[dict]) -> _Tail:
        tail, half = history[-max(3, len(history) // 5):], history[-max(3, len(history) // 2):]
        values = [h["entropy_at_t"] for h in tail]
        level = math.exp(sum(math.log(max(v, 1e-30)) for v in values) / len(values))
        change = math.expm1(_log_slope(half) * (half[-1]["epoch"] - half[0]["epoch"]))
        return cls(temperature, (tail[0]["epoch"], tail[-1]["epoch"]), min(values), max(values), level,
                   half[0]["epoch"], change, tail[-1]["heldout_accuracy"])  # fmt: skip

    @property
    def settled(self) -> bool:
        """The fitted change is below :data:`SETTLED` (False when none could be fitted)."""
        return abs(self.change) < SETTLED

    def text(self) -> str:
        trend = (f"fitted change {100 * self.change:+.0f} % from epoch {self.trend_from}"
                 if math.isfinite(self.change) else "one epoch: no trend")  # fmt: skip
        return (f"T = {self.temperature:g}: {self.level:.3g} nats [{self.low:.3g}, {self.high:.3g}] over "
                f"epochs {self.epochs[0]}–{self.epochs[1]}, {trend}, held-out accuracy "
                f"{100 * self.accuracy:.1f} %")  # fmt: skip


def _accuracy_spread(tails: list[_Tail]) -> float:
    """How far apart the teachers ended in held-out accuracy (a fraction)."""
    return max(t.accuracy for t in tails) - min(t.accuracy for t in tails)


def _all_or_named(named: list[str], total: int, things: str, sep: str) -> str:
    """``all <total> <things>`` when ``named`` lists every one of more than two, else the names."""
    return f"all {total} {things}" if len(named) == total > 2 else sep.join(named)


def _trend_across(tails: list[_Tail], when: str, moving: int) -> str:
    """The rest of the sentence whose neighbouring ranges overlap: the trend over every
    temperature, Kendall's τ between T and the tails' geometric means with its exact p-value
    (each teacher one network, so the test is over temperatures, not epochs). ``moving``: how
    many curves have not settled."""
    trend = RankTrend.of([t.temperature for t in tails], [t.level for t in tails])
    stat = (f"Kendall's τ between T and the tails' geometric means {trend.tau:+.2f}, exact two-sided "
            f"p = {trend.p_value:.2g} over {trend.n} temperatures, one network each")  # fmt: skip
    if trend.p_value >= TREND_P:
        return (f", and across the {trend.n} temperatures no trend is found either ({stat}): {when} no "
                "order in T of the soft labels' entropy is established by this run.")  # fmt: skip
    text = (f". Across the {trend.n} temperatures, {when} the soft labels' entropy "
            f"{'rises' if trend.tau > 0 else 'falls'} with T as a trend ({stat}), though neighbouring "
            "temperatures are not told apart")  # fmt: skip
    spread = _accuracy_spread(tails)
    if spread > TEACHER_SPREAD:
        return text + (f"; the teachers ended {100 * spread:.1f} pp apart in held-out accuracy, so it "
                       "mixes what T does with how well each teacher learned at this budget.")  # fmt: skip
    if moving:
        curves = "every curve is" if moving == len(tails) else "some curves are"
        return text + (f"; {curves} still moving, so it is where each teacher had got to at this "
                       "budget (plain training at T divides the loss's gradient by T), not a property "
                       "of T at convergence.")  # fmt: skip
    return text + "."


def soft_label_convergence(rows: list[dict]) -> str | None:
    """What the teachers' epoch-by-epoch entropy at T shows (None without the curves).

    Over each teacher's last fifth of epochs (at least 3): the geometric mean and range of
    its entropy at T; over its last half (at least 3), the change a least-squares line
    through the log fits: a curve whose fitted change is below :data:`SETTLED` has settled. An order in T is
    claimed only where the tail ranges of neighbouring temperatures do not overlap (one
    epoch's entropy on 1,000 images moves by tens of percent), "at convergence" only when
    every curve settled; teachers more than :data:`TEACHER_SPREAD` apart in held-out accuracy
    make the order mix what T does with how well each teacher learned."""
    curves = [(r["temperature"], r["teacher_history"]) for r in rows if r.get("teacher_history")]
    tails = sorted((_Tail.of(t, history) for t, history in curves), key=lambda tail: tail.temperature)
    if not tails:
        return None
    text = ("Epoch by epoch (figure soft_label_convergence.png; entropy of softmax(Z/T) in float32 on the "
            "first 1,000 training images; geometric mean and range over each teacher's last fifth of "
            "epochs, the change fitted over its last half): "
            + "; ".join(t.text() for t in tails) + ". ")  # fmt: skip
    moving = [t for t in tails if not t.settled]
    if moving:
        which = _all_or_named([f"T = {t.temperature:g}" for t in moving], len(tails), "curves", ", ")
        text += f"Still moving (a fitted change of {100 * SETTLED:.0f} % or more): {which}. "
    if len(tails) < 2:
        return text
    pairs = list(itertools.pairwise(tails))
    overlapping = [f"T = {a.temperature:g} and {b.temperature:g}" for a, b in pairs
                   if not (a.high < b.low or a.low > b.high)]  # fmt: skip
    last = tails[0].epochs[1]
    when = "at convergence" if not moving else f"after {last} epoch{'s' * (last != 1)}, not at convergence,"
    if overlapping:
        ranges = _all_or_named(overlapping, len(pairs), "pairs of neighbouring temperatures", "; ")
        text += f"The ranges of {ranges} overlap"
        # Kendall's exact distribution is that of distinct values: tied levels get no trend test
        if len(tails) >= TREND_TEMPERATURES and len({t.level for t in tails}) == len(tails):
            return text + _trend_across(tails, when, len(moving))
        return text + f", so {when} no order in T of the soft labels' entropy is established by this run."
    order = ("rises with T" if all(a.high < b.low for a, b in pairs) else
             "falls as T rises" if all(a.low > b.high for a, b in pairs) else
             "is not monotone in T")  # fmt: skip
    spread = _accuracy_spread(tails)
    if spread > TEACHER_SPREAD:
        where = "where every curve settled," if not moving else when
        return text + (f"{where.capitalize()} the mean entropy of the soft labels {order}, but the teachers "
                       f"ended {100 * spread:.1f} pp apart in held-out accuracy, so this order mixes "
                       "what T does with how well each teacher learned at this budget.")  # fmt: skip
    return text + (f"{when.capitalize()} the mean entropy of the soft labels {order}, the ranges of "
                   "neighbouring temperatures apart (one teacher per T: the spread over seeds needs "
                   "--seeds).")  # fmt: skip
