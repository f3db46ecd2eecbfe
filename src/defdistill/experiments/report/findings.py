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
    fmt,
    paper_entry,
    verdict,
)
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


def masking_detected(result: dict) -> bool:
    """The masking rule (:func:`defdistill.evaluation.checks.assess`, as in ``defdistill audit``) flags
    the student distilled at the highest temperature."""
    rows = distilled(result["models"])
    found = verdict(rows[-1]) if rows else None
    return bool(found and found["masking"])


def findings(dataset: str, result: dict, profile: dict) -> list[Statement]:
    """Plain statements computed from the numbers (trends, masking, flagged models)."""
    rows = distilled(result["models"])
    base = baseline(result["models"])
    out: list[Statement] = []
    if not rows:
        return out

    def say(kind: StatementKind, text: str) -> None:
        out.append(Statement(kind, text))

    top = rows[-1]
    say(StatementKind.PAPER_ATTACK,
        f"The paper's attack (JSMA on the deployed softmax F) succeeds on "
        f"{_pct(_success(base, AttackId.JSMA_F))} of attempts against the baseline and "
        f"{_pct(_success(top, AttackId.JSMA_F))} against the student distilled at "
        f"T = {top['temperature']:g}.")  # fmt: skip
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
    logs = [r["gradients"]["median_log10"] for r in [base, *rows]]
    if logs[0] is not None and logs[-1] is not None:
        say(StatementKind.GRADIENTS,
            f"The median gradient amplitude of the deployed softmax falls from 10^{logs[0]:.1f} "
            f"(baseline) to 10^{logs[-1]:.1f} at T = {top['temperature']:g}, "
            f"{logs[0] - logs[-1]:.1f} orders of magnitude; in float32, the precision attacks "
            f"compute in, {100 * top['gradients']['zero_fraction']:.0f}% of its samples have "
            "an exactly zero Jacobian.")  # fmt: skip
    soft = [(r["temperature"], (r["soft_labels"] or {}).get("mean_entropy")) for r in rows]
    soft = [(t, e) for t, e in soft if e is not None]
    if len(soft) > 1:
        rising = all(b > a for (_, a), (_, b) in itertools.pairwise(soft))
        say(StatementKind.SOFT_LABELS,
            "The teacher's soft labels at T carry "
            + ", ".join(f"{e:.3f}" for _, e in soft)
            + f" nats of entropy at T = {', '.join(f'{t:g}' for t, _ in soft)}"
            + (": softer labels as T rises, the mechanism the paper describes."
               if rising else ": not monotonic in T in this run."))  # fmt: skip
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
    for row in adversarial(result["models"]):
        say(StatementKind.POSITIVE_CONTROL, positive_control(row, top))
    drop = profile.get("max_accuracy_drop", 1.5)
    flagged = [r["name"] for r in rows if r["accuracy_variation_pp"] < -drop]
    if flagged:
        say(StatementKind.ACCURACY, f"Accuracy more than {drop} pp below the baseline: {', '.join(flagged)}.")
    else:
        say(StatementKind.ACCURACY, f"Every distilled model is within {drop} pp of the baseline's accuracy.")
    return out


def _robust_text(row: dict) -> str:
    """``a% [low, high] of n images (b% of the m correctly classified)`` for a model's row."""
    robust = row.get("robust_accuracy") or {}
    u, c = robust.get("unconditional_interval") or {}, robust.get("conditional_interval") or {}
    if u.get("rate") is None:
        return "–"
    return (f"{100 * u['rate']:.1f}% [{100 * u['low']:.0f}, {100 * u['high']:.0f}] of {u['n']} images "
            f"({_pct(c.get('rate'))} of the {c.get('n')} correctly classified)")  # fmt: skip


def _robust_sentence(top: dict, base: dict) -> str:
    """Robust accuracy (AutoAttack's convention) of the hottest student and of the baseline."""
    attacks = ", ".join((top.get("robust_accuracy") or {}).get("attacks") or [])
    return (f"Robust accuracy at the primary L∞ budget, per image (correctly classified and fooled by "
            f"none of {attacks}; a clean error counts as a failure): T = {top['temperature']:g} student "
            f"{_robust_text(top)}; baseline {_robust_text(base)}. The reproduction's attacks (no APGD, "
            "no Square) bound it from above; `defdistill audit` adds them.")  # fmt: skip


def positive_control(row: dict, top: dict) -> str:
    """The adversarially trained model beside the hottest student: resisting vs masking."""
    found = verdict(row)
    decided = "–" if found is None else ("masking" if found["masking"] else "no sign of masking")
    return (
        f"The positive control, `{row['name']}` (adversarially trained, clean accuracy "
        f"{100 * row['test_accuracy']:.2f}%), has a robust accuracy of {_robust_text(row)} under the "
        f"attacks of the table (verdict: {decided}), where the T = {top['temperature']:g} student "
        f"has {_robust_text(top)}: adversarial training resists, distillation masks. "
        "`defdistill audit` measures it with APGD and Square too."
    )


def _change(before: float | None, after: float | None) -> float | None:
    return after / before if before and after is not None else None


def comparison(results: dict, paper: dict) -> list[str]:
    """MNIST beside CIFAR-10: how ``rho_adv`` and JSMA's success react to T on each data set.

    The paper's comparison (Section V): distillation changes CIFAR-10 less than MNIST. Each
    data set is read at the highest temperature that every data set of the run has; the
    sentence deciding "less" or "more" compares the factors by which ``rho_adv`` grows
    from the baseline to that T. Empty when fewer than two data sets have students.
    """
    swept = {name: r for name, r in results.items() if distilled(r["models"])}
    common = set.intersection(*({row["temperature"] for row in distilled(r["models"])}
                                for r in swept.values())) if len(swept) > 1 else set()  # fmt: skip
    if not common:
        return []
    t = max(common)
    lines = [
        f"| data set | JSMA on F success %: baseline → T = {t:g} | paper | rho_adv %: baseline → "
        f"T = {t:g} | × | paper × |",
        "|---|---|---|---|---|---|",
    ]
    factors: dict[str, tuple[float | None, bool]] = {}
    paper_factors: dict[str, float | None] = {}
    for name, result in swept.items():
        base = baseline(result["models"])
        hot = next(r for r in distilled(result["models"]) if r["temperature"] == t)
        succ = [100 * _success(r, AttackId.JSMA_F) for r in (base, hot)]
        rho = [attack_value(r, AttackId.JSMA_F, "rho_adv_percent") for r in (base, hot)]
        censored = bool(attack_value(hot, AttackId.JSMA_F, "samples_without_success"))
        factors[name] = (_change(*rho), censored)
        p_succ = paper_entry(paper, name, "success_rate_by_temperature").get("values") or {}
        p_rho = paper_entry(paper, name, "rho_adv_by_temperature").get("values") or {}
        key = f"{t:g}"
        paper_succ = (f"{p_succ['baseline']:g} → {p_succ[key]:g}*"
                      if "baseline" in p_succ and key in p_succ else "–")  # fmt: skip
        paper_factor = paper_factors[name] = _change(p_rho.get("baseline"), p_rho.get(key))
        mark = "≥ " if censored else ""
        lines.append(
            f"| {dataset_title(name)} | {succ[0]:.1f} → {succ[1]:.1f} | {paper_succ} "
            f"| {fmt(rho[0], '.2f')} → {mark}{fmt(rho[1], '.2f')} "
            f"| {mark}{fmt(factors[name][0], '.2f')} | {fmt(paper_factor, '.2f', '*')} |"
        )
    mnist, other = factors.get("mnist"), [n for n in factors if n != "mnist"]
    if mnist and mnist[0] is not None:
        for name in other:
            factor, censored = factors[name]
            if factor is not None:
                lines += ["", _verdict(name, t, mnist, (factor, censored), paper_factors)]
    return lines


def _verdict(name: str, t: float, mnist: tuple[float, bool], other: tuple[float, bool],
             paper_factors: dict[str, float | None]) -> str:
    """The sentence comparing rho_adv's growth on MNIST and on ``name``.

    A censored factor is a lower bound (samples JSMA never broke count at its cap), so a
    conclusion holds only when the bound points the same way: "less" needs the other data
    set's factor exact, "more" needs MNIST's exact; otherwise the sentence says it is open.
    """
    title = dataset_title(name)
    at_least = ["at least " if censored else "" for censored in (mnist[1], other[1])]
    less = other[0] < mnist[0]
    quoted = [paper_factors["mnist"], paper_factors[name]]
    paper = (f" (×{quoted[0]:.2f} and ×{quoted[1]:.2f} from its quoted values)"
             if None not in quoted else "")  # fmt: skip
    grows = (f"From the baseline to T = {t:g}, rho_adv grows {at_least[0]}{mnist[0]:.2f}× on "
             f"MNIST and {at_least[1]}{other[0]:.2f}× on {title}: ")
    undecided = other[1] if less else mnist[1]  # the bound may lie on the other side
    if undecided:
        return (grows + "the attack's cap leaves open whether CIFAR-10 reacts to the temperature "
                f"less or more than MNIST; the paper reports less{paper}.")
    if less:
        return grows + f"CIFAR-10 reacts to the temperature less than MNIST, as the paper reports{paper}."
    return (grows + "CIFAR-10 reacts to the temperature more than MNIST, unlike the paper, which "
            f"reports less{paper}.")


def conclusion(results: dict) -> list[str]:
    """The answer to "is defensive distillation robust?", one paragraph per kind of outcome.

    Data sets whose hottest student the masking rule flags get the masking explanation;
    the others get their own numbers, since a student the paper's attack still breaks has
    nothing to mask, and the reproduction's attacks (no APGD, no Square) only bound its
    robust accuracy from above.
    """
    swept = {name: r for name, r in results.items() if distilled(r["models"])}
    masked = [name for name, r in swept.items() if masking_detected(r)]
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
        if name not in masked:
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
    base, top = baseline(result["models"]), distilled(result["models"])[-1]
    if verdict(top) is None:  # several seeds, verdicts that disagree
        return (f"On {title}, the seeds disagree on whether the T = {top['temperature']:g} student "
                "masks gradients: read each seed's masking checks in `results.json` before "
                "concluding.")  # fmt: skip
    cw = [attack_value(r, AttackId.CW_L2, "mean_l2") for r in (base, top)]
    drop = top["accuracy_variation_pp"]
    return (
        f"On {title}, no masking check fires on the T = {top['temperature']:g} student: "
        f"{100 * top['gradients']['zero_fraction']:.0f}% of its softmax Jacobians are exactly "
        "zero, and the paper's attack still succeeds on "
        f"{_pct(_success(top, AttackId.JSMA_F))} of attempts (baseline "
        f"{_pct(_success(base, AttackId.JSMA_F))}). Its robust accuracy under the table's attacks is "
        f"{_robust_text(top)} (baseline {_robust_text(base)}) and C&W needs a mean L2 of "
        f"{fmt(cw[1], '.2f')} (baseline {fmt(cw[0], '.2f')}), at a clean accuracy "
        f"{abs(drop):.1f} pp {'below' if drop < 0 else 'above'} the baseline's. That is an upper "
        "bound on its robust accuracy from PGD and C&W alone: `defdistill audit` adds APGD and "
        "Square before anything is called robust."
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
        f"JSMA is run on the first {profile['attack_samples']} correctly classified test images "
        f"per model (targets: {profile['targets']}); the paper attacked its whole test set, so "
        "our rates carry a sampling error of a few points."
    )
    notes.append(
        "Every model is attacked on the same test images (the first ones that every model "
        "of the run classifies correctly), so row-to-row differences are differences between "
        "models, not between samples."
    )
    features = math.prod(signature["input_shape"])
    cap = max(attack_value(r, AttackId.JSMA_F, "rho_adv_censored_at_percent") for r in result["models"])
    mnist_note = (" The paper's MNIST value at T = 100 (14.08 % with 0.45 % success) lies just "
                  "below that cap, as this convention gives." if dataset == "mnist" else "")  # fmt: skip
    notes.append(
        "rho_adv counts a sample that no targeted JSMA attempt broke at the largest L0 the "
        f"attack can reach (pairs of features up to gamma: {round(cap * features / 100):,} of "
        f"{features:,} input features, {cap:.2f} %), a lower bound of its minimum perturbation; "
        f"`≥` marks a value with censored samples, counted in the next column.{mnist_note} "
        "`results.json` also has `rho_adv_successful_percent` (broken samples only)."
    )
    worst = min(distilled(result["models"]), key=lambda r: r["accuracy_variation_pp"], default=None)
    short = (f" (here the T = {worst['temperature']:g} student is "
             f"{-worst['accuracy_variation_pp']:.2f} pp below the baseline)"
             if worst is not None and worst["accuracy_variation_pp"] < 0 else "")  # fmt: skip
    notes.append(
        "Training is the paper's: the loss at T, its SGD settings, He initialisation, nothing "
        "reparametrised (no head scaling), and every network from a seed of its own derived "
        "from the run's seed. Plain training at T divides the loss's gradient by T, so short "
        f"profiles leave the hottest students less accurate{short}."
    )
    notes.append(
        "PGD is run with cross-entropy and with the logit margin: cross-entropy saturates in "
        "float32 on confident networks (its gradient rounds to zero), the margin does not."
    )
    return notes
