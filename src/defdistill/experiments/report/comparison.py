"""MNIST beside the other data sets: how ``rho_adv`` grows with T on each (Papernot et al. 2016,
Section V: distillation changes CIFAR-10 less than MNIST), claimed only where established.
"""

from __future__ import annotations

from dataclasses import dataclass

from defdistill.experiments.report.columns import attack_value
from defdistill.experiments.report.data import (
    baseline,
    dataset_title,
    flagged,
    fmt,
    paper_entry,
    studied,
)
from defdistill.experiments.report.phrases import (
    Statement,
    interval_of,
    mean_ci,
    rate_ci,
)
from defdistill.names import AttackId, StatementKind


def _change(before: float | None, after: float | None) -> float | None:
    return after / before if before and after is not None else None


def _factor_interval(base: dict | None, hot: dict | None) -> tuple[float, float] | None:
    """A conservative interval of ``hot / base`` from the two means' intervals (the extreme
    ratios of their bounds); None when either is absent or the baseline's may be 0."""
    ib, ih = interval_of(base), interval_of(hot)
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
    # only the student compared: another temperature's accuracy does not bear on this factor
    below = [name for name in flagged(result["models"], profile) if name == hot["name"]]
    return _Growth(_change(*rho), _factor_interval(*cis),
                   bool(attack_value(hot, AttackId.JSMA_F, "samples_without_success")), below)  # fmt: skip


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
            f"| {dataset_title(name)} | {rate_ci(succ[0])} → {rate_ci(succ[1])} | {paper_succ} "
            f"| {mean_ci(rho[0])} → {mark}{mean_ci(rho[1])} "
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
    a lower bound). Otherwise the sentence says it is not established, and why. Only the two
    students compared count: a temperature that did not learn elsewhere in the sweep does not
    bear on the factor at ``t``.
    """
    title = dataset_title(name)
    at_least = ["at least " if g.censored else "" for g in (mnist, other)]
    if mnist.factor is None or other.factor is None:
        raise ValueError("dataset_comparison needs both data sets' rho_adv factors")
    less = other.factor < mnist.factor
    quoted = [paper_factors.get("mnist"), paper_factors.get(name)]
    paper = (f" (×{quoted[0]:.2f} and ×{quoted[1]:.2f} from its quoted values)"
             if None not in quoted else "")  # fmt: skip
    grows = (f"From the baseline to T = {t:g}, rho_adv is multiplied by {at_least[0]}{mnist.factor:.2f} "
             f"on MNIST and by {at_least[1]}{other.factor:.2f} on {title}: ")
    why = []
    for data, g in (("MNIST", mnist), (title, other)):
        if g.flagged:
            why.append(f"on {data}, {', '.join(g.flagged)} falls more than the accuracy tolerance "
                       "below the baseline")  # fmt: skip
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

