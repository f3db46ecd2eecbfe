"""The report's statements in prose, computed from the numbers: findings, differences from the paper.

Whether a model masks gradients is not decided here: :func:`masking_detected` reads the
verdict that :func:`defdistill.evaluation.checks.assess` stored in the rows.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from defdistill.experiments.report.columns import ACCURACY, SUCCESS, attack_value
from defdistill.experiments.report.data import (
    PAPER_DATASET,
    adversarial,
    baseline,
    dataset_title,
    distilled,
    flagged,
    fmt,
    hottest,
    learned,
    paper_entry,
    studied,
    verdict,
)
from defdistill.experiments.report.trend import RankTrend
from defdistill.names import AttackId, StatementKind


@dataclass(frozen=True)
class Statement:
    """One sentence of the report and what it is about (code selects by ``kind``, never by text)."""

    kind: StatementKind
    text: str


# the statements the robustness section repeats beside its table
ROBUSTNESS = frozenset({StatementKind.VERDICT, StatementKind.MASKING, StatementKind.ADAPTIVE,
                        StatementKind.ROBUST_ACCURACY})  # fmt: skip


def _success(row: dict, attack: AttackId) -> float | None:
    return attack_value(row, attack, SUCCESS)


def _accuracy(row: dict, attack: AttackId) -> float | None:
    return attack_value(row, attack, ACCURACY)


def _pct(value: float | None, spec: str = ".1f") -> str:
    return fmt(None if value is None else 100 * value, spec, "%")


def _interval(found: dict | None) -> tuple[float, float] | None:
    """``(low, high)`` of an interval dict, None when absent or undefined."""
    if not found or found.get("low") is None or found.get("high") is None:
        return None
    return float(found["low"]), float(found["high"])


def separated(a: dict | None, b: dict | None) -> bool | None:
    """Whether two intervals (Proportion / MeanEstimate dicts) do not overlap; None if either is absent."""
    ia, ib = _interval(a), _interval(b)
    if ia is None or ib is None:
        return None
    return ia[1] < ib[0] or ib[1] < ia[0]


def _rate_ci(found: dict | None) -> str:
    """``x% [low, high] of n`` for a Proportion dict; ``–`` when absent."""
    if not found or found.get("rate") is None:
        return "–"
    return (f"{100 * found['rate']:.1f}% [{100 * found['low']:.1f}, {100 * found['high']:.1f}] "
            f"of {found['n']}")  # fmt: skip


def _difference(a: dict | None, b: dict | None) -> str:
    """What a reader may conclude from comparing two intervals."""
    found = separated(a, b)
    if found is None:
        return "no interval to compare"
    return ("the 95 % intervals separate" if found
            else "the 95 % intervals overlap: no difference is established")  # fmt: skip


def _count(found: dict | None) -> str:
    """``k of n`` (``all n`` when every one): never a rounded 100 %."""
    if not found or not found.get("n"):
        return "none measured"
    if found["k"] == 0:
        return f"none of {found['n']}"
    return f"all {found['n']}" if found["k"] == found["n"] else f"{found['k']} of {found['n']}"


def masking_detected(result: dict) -> bool:
    """The masking rule (:func:`defdistill.evaluation.checks.assess`, as in ``defdistill audit``) flags
    the student distilled at the highest temperature that learned."""
    top = hottest(result["models"])
    found = verdict(top) if top else None
    return bool(found and found["masking"])


def findings(dataset: str, result: dict, profile: dict) -> list[Statement]:
    """Plain statements computed from the numbers (trends, masking, flagged models)."""
    rows = distilled(result["models"])
    base = baseline(result["models"])
    out: list[Statement] = []
    if not rows:
        return out
    top = hottest(result["models"])
    if top is not None:
        out += _attacks_on(top, base, result)
    out += _training_statements(result, rows, profile, top)
    return out


def _attacks_on(top: dict, base: dict, result: dict) -> list[Statement]:
    """What the attacks and the gradients say of the hottest student that learned."""
    out: list[Statement] = []

    def say(kind: StatementKind, text: str) -> None:
        out.append(Statement(kind, text))

    f_base, f_top = (attack_value(r, AttackId.JSMA_F, "success_interval") for r in (base, top))
    say(StatementKind.PAPER_ATTACK,
        f"The paper's attack (JSMA on the deployed softmax F) succeeds on "
        f"{_rate_ci(f_base)} attempts against the baseline and {_rate_ci(f_top)} against the "
        f"student distilled at T = {top['temperature']:g} ({_difference(f_base, f_top)}; the "
        "attempts of one image are not independent, so read the intervals as too narrow).")  # fmt: skip
    z, zt = _pct(_success(top, AttackId.JSMA_Z)), _pct(_success(top, AttackId.JSMA_ZT))
    cw_rate, cw_l2 = _pct(_success(top, AttackId.CW_L2)), attack_value(top, AttackId.CW_L2, "mean_l2")
    on_zt = AttackId.PGD_CE_ZT if top["temperature"] != 1.0 else AttackId.PGD_CE_F  # Z/1 is F
    pgd = _pct(_accuracy(top, on_zt))
    margin = _pct(_accuracy(top, AttackId.PGD_MARGIN))
    top_verdict = verdict(top)
    if top_verdict is not None:
        # with several seeds the texts differ (numbers in them) while the decision agrees
        text = top_verdict.get("text") or ("apparent robustness is gradient masking, in every seed"
                                           if top_verdict["masking"] else
                                           "no sign of gradient masking, in every seed")  # fmt: skip
        say(StatementKind.VERDICT, f"Masking checks on the T = {top['temperature']:g} student (the rule "
                                   f"`defdistill audit` applies): {text}.")  # fmt: skip
    if masking_detected(result):
        say(StatementKind.MASKING,
            f"**This is gradient masking, not robustness.** The same JSMA on the logits Z "
            f"succeeds on {z} of attempts and on softmax(Z/T) with the training "
            f"temperature on {zt}; Carlini & Wagner L2 succeeds on "
            f"{cw_rate} (mean L2 {fmt(cw_l2, '.2f')}, baseline "
            f"{fmt(attack_value(base, AttackId.CW_L2, 'mean_l2'), '.2f')}); PGD L∞ leaves {pgd} "
            f"accuracy with cross-entropy on the logits divided by the training temperature and "
            f"{margin} with the margin loss on the logits. Distillation "
            "saturates the deployed softmax so that its gradient vanishes in float32; the "
            "decision boundary is as close as before.")  # fmt: skip
    else:
        say(StatementKind.ADAPTIVE,
            f"Adaptive attacks on the T = {top['temperature']:g} student: JSMA on Z "
            f"{z}, JSMA on softmax(Z/T) {zt}, C&W L2 {cw_rate}, PGD accuracy {pgd} (CE on Z/T) "
            f"and {margin} (margin).")  # fmt: skip
    say(StatementKind.ROBUST_ACCURACY, _robust_sentence(top, base))
    logs = [r["gradients"]["median_log10"] for r in (base, top)]
    if logs[0] is not None and logs[-1] is not None:
        means = [(r["gradients"] or {}).get("log10_interval") for r in (base, top)]
        say(StatementKind.GRADIENTS,
            f"The median gradient amplitude of the deployed softmax falls from 10^{logs[0]:.1f} "
            f"(baseline) to 10^{logs[-1]:.1f} at T = {top['temperature']:g}, "
            f"{logs[0] - logs[-1]:.1f} orders of magnitude (mean log10 over the images: "
            f"{_mean_ci(means[0])} and {_mean_ci(means[1])}, {_difference(*means)}); in float32, "
            f"the precision attacks compute in, {_count(top['gradients'].get('zero'))} measured "
            "images have an exactly zero Jacobian.")  # fmt: skip
    return out


def _training_statements(result: dict, rows: list[dict], profile: dict, top: dict | None) -> list[Statement]:
    """What training produced: the soft labels, scaled copies, the positive control beside the
    hottest student that learned, and the accuracy flags."""
    out: list[Statement] = []

    def say(kind: StatementKind, text: str) -> None:
        out.append(Statement(kind, text))

    soft = [(r["temperature"], (r["soft_labels"] or {}).get("mean_entropy"), r.get("teacher_accuracy"))
            for r in rows]  # fmt: skip
    soft = [(t, e, a) for t, e, a in soft if e is not None]
    convergence = soft_label_convergence(rows)
    if len(soft) > 1:
        # without the curves, nothing tells whether the teachers had converged: say they may not
        caveat = ("" if convergence else
                  " Plain training at T divides the loss's gradient by T, so hotter teachers have "
                  "trained less in the same epochs: this order mixes what T does with how far each "
                  "teacher got, and does not measure what T does to the soft labels at "
                  "convergence.")  # fmt: skip
        say(StatementKind.SOFT_LABELS,
            f"After the profile's {profile.get('epochs')} epoch(s), the teachers' soft labels at T carry "
            + ", ".join(f"{e:.3f} nats (teacher accuracy {fmt(None if a is None else 100 * a, '.2f', '%')})"
                        for _, e, a in soft)
            + f" at T = {', '.join(f'{t:g}' for t, _, _ in soft)} (on the whole training set; the "
            f"curves below on its first 1,000 images).{caveat}")  # fmt: skip
    if convergence:
        say(StatementKind.SOFT_LABELS, convergence)
    copies = [r["scaled_copy"] for r in rows if r.get("scaled_copy")]
    if copies:
        worst = min(copies, key=lambda c: c["relative_residual"])
        say(StatementKind.SCALED_COPY,
            "No two students are scaled copies of each other: the closest pair's centred logits "
            f"differ from the best scalar multiple by {worst['relative_residual']:.3f} of their "
            "norm (0 would mean one network with logits ×T)."
            if worst["relative_residual"] > 0.01 else
            f"**Two students are (nearly) scaled copies** (relative residual "
            f"{worst['relative_residual']:.2g}): the sweep did not measure what T does.")  # fmt: skip
    for row in adversarial(result["models"]) if top is not None else []:
        recipe = row.get("recipe") or profile.get("adversarial")
        say(StatementKind.POSITIVE_CONTROL, positive_control(row, top, recipe))
    drop = profile.get("max_accuracy_drop", 1.5)
    below = flagged(result["models"], profile)
    curves = (" (their held-out accuracy epoch by epoch: figure training_curves.png)"
              if any(r.get("training_history") for r in rows) else "")  # fmt: skip
    if below:
        say(StatementKind.ACCURACY,
            f"Accuracy more than {drop} pp below the baseline: {', '.join(below)}{curves}.")
    else:
        say(StatementKind.ACCURACY, f"Every distilled model is within {drop} pp of the baseline's accuracy.")
    unlearned = [r for r in rows if not learned(r)]
    if unlearned:
        say(StatementKind.ACCURACY, not_learned(unlearned, profile, top) + ".")
    return out


def not_learned(rows: list[dict], profile: dict, top: dict | None) -> str:
    """The sentence on the distilled models whose accuracy stayed at the chance floor."""
    each = [f"T = {r['temperature']:g} (student {fmt(100 * r['test_accuracy'], '.1f', '%')}, teacher "
            f"{fmt(None if r.get('teacher_accuracy') is None else 100 * r['teacher_accuracy'], '.1f', '%')})"
            for r in rows]  # fmt: skip
    subject = (f"the verdicts above are the T = {top['temperature']:g} student's, the hottest that learned"
               if top is not None else "no distilled model learned, so none is read")
    return (f"**Did not learn in {profile.get('epochs')} epoch(s)** (the student's or its teacher's "
            f"test accuracy at or below the chance floor training refuses): {', '.join(each)}. They "
            "stay in the tables, but their attack numbers are not read (a network at chance "
            f"\"resists\" every attack on the few images it gets right by luck): {subject}")


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


def _mean_ci(found: dict | None, spec: str = ".2f") -> str:
    """``mean [low, high]`` for a MeanEstimate dict; ``–`` when absent."""
    if not found or found.get("mean") is None:
        return "–"
    return f"{found['mean']:{spec}} [{found['low']:{spec}}, {found['high']:{spec}}]"


def _robust_text(row: dict) -> str:
    """``a% [low, high] of n images (b% of the m correctly classified)`` for a model's row."""
    robust = row.get("robust_accuracy") or {}
    u, c = robust.get("unconditional_interval") or {}, robust.get("conditional_interval") or {}
    if u.get("rate") is None:
        return "–"
    return (f"{100 * u['rate']:.1f}% [{100 * u['low']:.1f}, {100 * u['high']:.1f}] of {u['n']} drawn "
            f"images, conditionally {_rate_ci(c)} classified correctly")  # fmt: skip


def _robust_sentence(top: dict, base: dict) -> str:
    """Robust accuracy (AutoAttack's convention) of the hottest student and of the baseline."""
    attacks = ", ".join((top.get("robust_accuracy") or {}).get("attacks") or [])
    robust = [(r.get("robust_accuracy") or {}).get("unconditional_interval") for r in (top, base)]
    return (f"Robust accuracy at the primary L∞ budget, per image (correctly classified and fooled by "
            f"none of {attacks}; a clean error counts as a failure): T = {top['temperature']:g} student "
            f"{_robust_text(top)}; baseline {_robust_text(base)} ({_difference(*robust)}). The "
            "reproduction's attacks (no APGD, no Square) bound it from above; `defdistill audit` "
            "adds them.")  # fmt: skip


def positive_control(row: dict, top: dict, recipe: dict | None = None) -> str:
    """The adversarially trained model beside the hottest student: resisting vs masking, with
    its training recipe (the row's own, else ``Profile.adversarial``)."""
    found = verdict(row)
    decided = "–" if found is None else ("masking" if found["masking"] else "no sign of masking")
    how = ", ".join(f"{k} {v}" for k, v in (recipe or {}).items())
    robust = [(r.get("robust_accuracy") or {}).get("unconditional_interval") for r in (row, top)]
    shipped = f", the shipped `{row['shipped']}`" if row.get("shipped") else ""
    return (
        f"The positive control, `{row['name']}`{shipped} (adversarially trained{': ' + how if how else ''}; "
        f"clean accuracy {100 * row['test_accuracy']:.2f}%), has a robust accuracy of "
        f"{_robust_text(row)} under the attacks of the table (verdict: {decided}), where the "
        f"T = {top['temperature']:g} student has {_robust_text(top)} ({_difference(*robust)}). "
        "`defdistill audit` measures it with APGD and Square too."
    )


def _change(before: float | None, after: float | None) -> float | None:
    return after / before if before and after is not None else None


def _factor_interval(base: dict | None, hot: dict | None) -> tuple[float, float] | None:
    """A conservative interval of ``hot / base`` from the two means' intervals (the extreme
    ratios of their bounds); None when either is absent or the baseline's may be 0."""
    ib, ih = _interval(base), _interval(hot)
    if ib is None or ih is None or ib[0] <= 0:
        return None
    return ih[0] / ib[1], ih[1] / ib[0]


@dataclass(frozen=True)
class _Growth:
    """How rho_adv grows from the baseline to T on one data set, and what limits the reading."""

    factor: float | None
    interval: tuple[float, float] | None
    censored: bool
    flagged: list[str]


def _growth(result: dict, t: float) -> _Growth:
    rows = studied(result["models"])
    base, hot = baseline(result["models"]), next(r for r in rows if r["temperature"] == t)
    rho = [attack_value(r, AttackId.JSMA_F, "rho_adv_percent") for r in (base, hot)]
    cis = [attack_value(r, AttackId.JSMA_F, "rho_adv_interval") for r in (base, hot)]
    profile = (result.get("config") or {}).get("profile") or {}
    return _Growth(_change(*rho), _factor_interval(*cis),
                   bool(attack_value(hot, AttackId.JSMA_F, "samples_without_success")),
                   flagged(result["models"], profile))  # fmt: skip


def comparison(results: dict, paper: dict) -> list[str]:
    """MNIST beside CIFAR-10: how ``rho_adv`` and JSMA's success react to T on each data set.

    The paper's comparison (Section V): distillation changes CIFAR-10 less than MNIST. Each
    data set is read at the highest temperature that every data set of the run has; the
    sentence (:func:`dataset_comparison`) compares the factors by which ``rho_adv`` grows
    from the baseline to that T. Empty when fewer than two data sets have students.
    """
    swept = {name: r for name, r in results.items() if studied(r["models"])}
    common = set.intersection(*({row["temperature"] for row in studied(r["models"])}
                                for r in swept.values())) if len(swept) > 1 else set()  # fmt: skip
    if not common:
        return []
    t = max(common)
    lines = [
        f"| data set | JSMA on F success %: baseline → T = {t:g} | paper | rho_adv %: baseline → "
        f"T = {t:g} [95% CI] | × [conservative CI] | paper × |",
        "|---|---|---|---|---|---|",
    ]
    growth: dict[str, _Growth] = {}
    paper_factors: dict[str, float | None] = {}
    for name, result in swept.items():
        base = baseline(result["models"])
        hot = next(r for r in studied(result["models"]) if r["temperature"] == t)
        succ = [attack_value(r, AttackId.JSMA_F, "success_interval") for r in (base, hot)]
        rho = [attack_value(r, AttackId.JSMA_F, "rho_adv_interval") for r in (base, hot)]
        g = growth[name] = _growth(result, t)
        p_succ = paper_entry(paper, name, "success_rate_by_temperature").get("values") or {}
        p_rho = paper_entry(paper, name, "rho_adv_by_temperature").get("values") or {}
        key = f"{t:g}"
        paper_succ = (f"{p_succ['baseline']:g} → {p_succ[key]:g}*"
                      if "baseline" in p_succ and key in p_succ else "–")  # fmt: skip
        paper_factor = paper_factors[name] = _change(p_rho.get("baseline"), p_rho.get(key))
        mark = "≥ " if g.censored else ""
        ci = "" if g.interval is None else f" [{g.interval[0]:.2f}, {g.interval[1]:.2f}]"
        lines.append(
            f"| {dataset_title(name)} | {_rate_ci(succ[0])} → {_rate_ci(succ[1])} | {paper_succ} "
            f"| {_mean_ci(rho[0])} → {mark}{_mean_ci(rho[1])} "
            f"| {mark}{fmt(g.factor, '.2f')}{ci} | {fmt(paper_factor, '.2f', '*')} |"
        )
    if "mnist" in growth and growth["mnist"].factor is not None:
        for name in growth:
            if name != "mnist" and growth[name].factor is not None:
                lines += ["", dataset_comparison(name, t, growth["mnist"], growth[name], paper_factors).text]
    return lines


def dataset_comparison(name: str, t: float, mnist: _Growth, other: _Growth,
                       paper_factors: dict[str, float | None]) -> Statement:  # fmt: skip
    """The sentence comparing rho_adv's growth on MNIST and on ``name`` (kind ``DATASET_COMPARISON``).

    The paper's claim (CIFAR-10 reacts less) is stated only when it is established: both data
    sets' students within the accuracy tolerance, the two factors' conservative intervals
    apart, and no censoring on the side that could reverse the order (a censored factor is
    a lower bound). Otherwise the sentence says it is not established, and why.
    """
    title = dataset_title(name)
    at_least = ["at least " if g.censored else "" for g in (mnist, other)]
    less = other.factor < mnist.factor
    quoted = [paper_factors.get("mnist"), paper_factors.get(name)]
    paper = (f" (×{quoted[0]:.2f} and ×{quoted[1]:.2f} from its quoted values)"
             if None not in quoted else "")  # fmt: skip
    grows = (f"From the baseline to T = {t:g}, rho_adv grows {at_least[0]}{mnist.factor:.2f}× on "
             f"MNIST and {at_least[1]}{other.factor:.2f}× on {title}: ")
    why = []
    for data, g in (("MNIST", mnist), (title, other)):
        if g.flagged:
            why.append(f"on {data}, {', '.join(g.flagged)} fall more than the accuracy tolerance below "
                       "the baseline")  # fmt: skip
    if mnist.interval is None or other.interval is None:
        why.append("a factor has no interval")
    elif not (mnist.interval[1] < other.interval[0] or other.interval[1] < mnist.interval[0]):
        why.append("the factors' intervals overlap")
    if (other.censored if less else mnist.censored):
        why.append("JSMA on F exhausted its budget on some images, so a factor is only a lower bound")
    if why:
        return Statement(StatementKind.DATASET_COMPARISON,
                         grows + "whether CIFAR-10 reacts to the temperature less or more than MNIST is "
                         f"not established here ({'; '.join(why)}); the paper reports "
                         f"less{paper}.")  # fmt: skip
    if less:
        return Statement(StatementKind.DATASET_COMPARISON,
                         grows + f"CIFAR-10 reacts to the temperature less than MNIST (intervals apart), "
                         f"as the paper reports{paper}.")  # fmt: skip
    return Statement(StatementKind.DATASET_COMPARISON,
                     grows + "CIFAR-10 reacts to the temperature more than MNIST (intervals apart), "
                     f"unlike the paper, which reports less{paper}.")  # fmt: skip


def ablation_findings(result: dict) -> list[Statement]:
    """One sentence per ablation (:mod:`defdistill.evaluation.ablations`), computed from its rates
    and whether their intervals separate: ``ABLATION_SCALE`` and ``ABLATION_PRECISION``."""
    found = result.get("ablations")
    if not found:
        return []
    rows, t = found["rows"], found["temperature"]
    base, scaled, student, student64 = (rows.get(k) or {} for k in ("baseline", "baseline_scaled", "student",
                                                                    "student_float64"))  # fmt: skip
    images = (f"{found['jsma_images']} images drawn at random (seed {found.get('seed', '–')}) that both "
              f"networks classify correctly, JSMA toward every other class")  # fmt: skip
    f_drop = separated(scaled.get("jsma_f"), base.get("jsma_f")) and (
        scaled["jsma_f"]["high"] < base["jsma_f"]["low"])
    z_same = separated(scaled.get("jsma_z"), base.get("jsma_z")) is False
    if f_drop and z_same:
        reading = ("scaling the logits alone stops the paper's attack, and the attack on the logits "
                   "is as strong as on the baseline (its intervals overlap)")  # fmt: skip
    elif f_drop:
        reading = ("scaling the logits alone stops the paper's attack; JSMA on Z changes too "
                   "(intervals apart), so scale is not all that moved")  # fmt: skip
    else:
        reading = "scale alone is not shown to stop the paper's attack here (intervals overlap)"
    scale = Statement(StatementKind.ABLATION_SCALE,
        f"Scale alone (the baseline with its logits ×{t:g}, no training; {images}): JSMA on F "
        f"succeeds on {_rate_ci(scaled.get('jsma_f'))} attempts, against {_rate_ci(base.get('jsma_f'))} "
        f"on the baseline and {_rate_ci(student.get('jsma_f'))} on the T = {t:g} student; JSMA on Z "
        f"on {_rate_ci(scaled.get('jsma_z'))} (baseline {_rate_ci(base.get('jsma_z'))}); "
        f"{_count(scaled.get('zero_jacobian'))} images have an exactly zero float32 Jacobian: "
        f"{reading}.")  # fmt: skip
    up64 = found["comparisons"].get("student_float64_f_above_float32_f")
    up_exact = found["comparisons"].get("student_exact_f_above_float32_f")
    if up64:
        reading = ("the paper's attack succeeds again once the softmax no longer underflows: the "
                   "arithmetic, not the network, stopped it")  # fmt: skip
    elif up_exact:
        gap = fmt(student64.get("median_logit_gap"), ".0f")
        reading = (f"float64 is not enough (median top-2 logit gap {gap}, beyond float64's ~745), "
                   "but with the pair chosen as exact arithmetic would choose it the attack succeeds "
                   "again: the arithmetic, not the network, stopped it")  # fmt: skip
    else:
        reading = "a return of the paper's attack is not established here (intervals overlap)"
    precision = Statement(StatementKind.ABLATION_PRECISION,
        f"Precision alone (the T = {t:g} student; same images): JSMA on F succeeds on "
        f"{_rate_ci(student.get('jsma_f'))} attempts in float32, {_rate_ci(student64.get('jsma_f'))} in "
        f"float64 and {_rate_ci(student.get('jsma_f_exact'))} with the pair chosen in exact "
        f"arithmetic; exactly zero Jacobians: {_count(student.get('zero_jacobian'))} images in float32, "
        f"{_count(student64.get('zero_jacobian'))} in float64: {reading}.")  # fmt: skip
    return [scale, precision]


def conclusion(results: dict) -> list[str]:
    """The answer to "is defensive distillation robust?", one paragraph per kind of outcome.

    Data sets whose hottest student the masking rule flags get the masking explanation;
    the others get their own numbers, since a student the paper's attack still breaks has
    nothing to mask, and the reproduction's attacks (no APGD, no Square) only bound its
    robust accuracy from above.
    """
    swept = {name: r for name, r in results.items() if distilled(r["models"])}
    masked = [name for name, r in swept.items() if masking_detected(r)]
    unread = [name for name, r in swept.items() if hottest(r["models"]) is None]
    paragraphs = []
    if masked:
        paragraphs.append(
            f"**No.** On {' and '.join(dataset_title(n) for n in masked)}, the distilled "
            "networks resist the paper's attack only because their deployed logits are about T "
            "times larger: the softmax saturates and its gradient underflows, so attacks that "
            "differentiate the probabilities stall. Attacks on the logits (Carlini & Wagner, "
            "arXiv:1607.04311, arXiv:1608.04644) or on the logits divided by the training "
            "temperature still find adversarial examples, at about the baseline's distortion: "
            "the defence masks gradients."
        )
    for name, result in swept.items():
        if name in unread:
            paragraphs.append(f"On {dataset_title(name)}, no distilled network learned (every student "
                              "or its teacher at the chance floor): there is nothing to conclude about "
                              "the defence there.")  # fmt: skip
        elif name not in masked:
            paragraphs.append(_unmasked(dataset_title(name), result))
    if not masked:
        paragraphs.append(
            "These measurements do not show the masking pattern (the paper's attack failing "
            "where adaptive attacks succeed); read the tables above before concluding "
            "anything about robustness, and check that every model learned."
        )
    lines = []
    for text in paragraphs:
        lines += [text, ""]
    return lines[:-1]


def _unmasked(title: str, result: dict) -> str:
    """The paragraph on a data set whose hottest student the masking rule does not flag."""
    base, top = baseline(result["models"]), hottest(result["models"])
    if verdict(top) is None:  # several seeds, verdicts that disagree
        return (f"On {title}, the seeds disagree on whether the T = {top['temperature']:g} student "
                "masks gradients: read each seed's masking checks in `results.json` before "
                "concluding.")  # fmt: skip
    cw = [attack_value(r, AttackId.CW_L2, "mean_l2") for r in (base, top)]
    drop = top["accuracy_variation_pp"]
    return (
        f"On {title}, no masking check fires on the T = {top['temperature']:g} student: "
        f"{_count(top['gradients'].get('zero'))} measured images have an exactly zero softmax "
        "Jacobian, and the paper's attack still succeeds on "
        f"{_rate_ci(attack_value(top, AttackId.JSMA_F, 'success_interval'))} attempts (baseline "
        f"{_rate_ci(attack_value(base, AttackId.JSMA_F, 'success_interval'))}). Its robust accuracy "
        "under the table's attacks is "
        f"{_robust_text(top)} (baseline {_robust_text(base)}) and C&W needs a mean L2 of "
        f"{fmt(cw[1], '.2f')} (baseline {fmt(cw[0], '.2f')}), at a clean accuracy "
        f"{abs(drop):.1f} pp {'below' if drop < 0 else 'above'} the baseline's. That is an upper "
        "bound on its robust accuracy from PGD and C&W alone: `defdistill audit` adds APGD and "
        "Square before anything is called robust."
    )


def sampling_note(result: dict) -> str:
    """How the report's images were chosen: the random draw, its seed and size, and what the
    accuracy is measured on."""
    config, profile = result["config"], result["config"]["profile"]
    draws = [run.get("samples") for run in result.get("per_seed", [])] or [config.get("samples")]
    draws = [d for d in draws if d]
    seeds = ", ".join(str(d["seed"]) for d in draws) or "–"
    n = draws[0]["n"] if draws else "–"
    test = draws[0]["test_images"] if draws else "–"
    limited = profile.get("limit_test")
    on = (f"the first {test:,} images of the test set (`limit_test`)" if limited
          else f"the whole test set ({test:,} images)") if draws else "the test set"  # fmt: skip
    return (
        f"Evaluation images: {n} drawn at random from {on} with seed {seeds} (indices in "
        "`results.json`, `config.samples`), the same images for every model, so row-to-row "
        "differences are differences between models, not between samples. Each model is "
        "attacked on the ones it classifies correctly (JSMA toward every other class on the "
        f"first {profile['attack_samples']} of those, targets: {profile['targets']}; the other "
        f"attacks on up to {profile.get('adaptive_samples', '–')}); a clean error counts as a failure in "
        f"the unconditional robust accuracy. Clean accuracy is measured on {on}. The gradient "
        f"amplitudes are on {profile.get('gradient_samples', '–')} images of the same seeded draw. "
        "Every rate is shown with its 95 % Wilson interval and n, every mean with a 95 % "
        "bootstrap interval over images (2,000 resamples)."
    )


def differences(dataset: str, result: dict) -> list[str]:
    """Where the run differs from the paper's protocol, with this data set's numbers."""
    profile, signature = result["config"]["profile"], result["config"]["dataset_signature"]
    notes = []
    subset = PAPER_DATASET.get(dataset, dataset) != dataset
    if profile["name"] != "paper" or profile["epochs"] < 50 or subset or profile["limit_train"]:
        images = (f", on the subset's {signature['n_train']:,} training images (the paper trained "
                  "on the full set)" if subset else "")  # fmt: skip
        limit = f", first {profile['limit_train']} training images" if profile["limit_train"] else ""
        notes.append(
            f"Profile `{profile['name']}`: {profile['epochs']} epoch(s) instead of the paper's 50"
            f"{images}{limit}; accuracies are therefore below the paper's."
        )
    notes.append(
        "The rates are measured on a random draw of the test set (see the sampling note above), "
        "not on the whole test set as in the paper: they carry the sampling error their intervals show."
    )
    features = math.prod(signature["input_shape"])
    cap = max(attack_value(r, AttackId.JSMA_F, "rho_adv_censored_at_percent") or 0.0
              for r in result["models"])  # fmt: skip
    mnist_note = (" The paper's MNIST value at T = 100 (14.08 % with 0.45 % success) lies just below "
                  "that cap, so a value near it here is set by the cap, not measured."
                  if dataset == "mnist" else "")  # fmt: skip
    exhausted = [(r, attack_value(r, AttackId.JSMA_F, "samples_without_success"),
                  attack_value(r, AttackId.JSMA_F, "samples")) for r in result["models"]]  # fmt: skip
    exhausted = [f"{r['name']} ({k} of {n} images)" for r, k, n in exhausted if k]
    notes.append(
        "rho_adv counts an image on which JSMA on F exhausted its budget (no targeted attempt "
        f"succeeded within gamma: {round(cap * features / 100):,} of {features:,} input features, "
        f"{cap:.2f} %) at that cap. JSMA is greedy: such a value bounds what JSMA on F needs, not the "
        "model's minimum perturbation (attacks on the logits often succeed on the same images). `≥` "
        "marks a value with such images"
        + (f"; here JSMA on F exhausted its budget on {', '.join(exhausted)}" if exhausted else "")
        + f".{mnist_note} `results.json` also has `rho_adv_successful_percent` (broken images only)."
    )
    worst = min(distilled(result["models"]), key=lambda r: r["accuracy_variation_pp"], default=None)
    short = (f" (here the T = {worst['temperature']:g} student is "
             f"{-worst['accuracy_variation_pp']:.2f} pp below the baseline)"
             if worst is not None and worst["accuracy_variation_pp"] < 0 else "")  # fmt: skip
    notes.append(
        "Training follows the paper: the loss at T, its SGD settings, nothing reparametrised (no "
        "head scaling). Not from the paper: He initialisation (the paper does not state one), and "
        "every network from a seed of its own derived from the run's seed. Plain training at T "
        "divides the loss's gradient by T, so short profiles leave the hottest students less "
        f"accurate{short}."
    )
    notes.append(
        "PGD is run with cross-entropy and with the logit margin: cross-entropy saturates in "
        "float32 on confident networks (its gradient rounds to zero), the margin does not."
    )
    if "cw_iterations" in profile:
        notes.append(
            f"Carlini & Wagner L2 is run untargeted (κ = 0) with {profile['cw_search_steps']} "
            f"binary-search steps over its constant and up to {profile['cw_iterations']:,} Adam "
            "iterations each, stopped early when its loss stalls; the reference implementation "
            "(nn_robust_attacks) attacks a chosen target with up to 10,000. Its mean L2 bounds the "
            "minimal perturbation from above, and a success rate below 100 % may be the budget's."
        )
    return notes
