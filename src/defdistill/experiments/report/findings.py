"""The report's statements on one data set in prose, computed from the numbers: the attacks on
the hottest student that learned, what training produced, the positive control, the ablations.

Whether a model masks gradients is not decided here:
:func:`~defdistill.experiments.report.data.masking_detected` reads the verdict that
:func:`defdistill.evaluation.checks.assess` stored in the rows.
"""

from __future__ import annotations

from defdistill.experiments.report.columns import attack_value
from defdistill.experiments.report.data import (
    adversarial,
    baseline,
    distilled,
    flagged,
    fmt,
    hottest,
    learned,
    masking_detected,
    verdict,
)
from defdistill.experiments.report.phrases import (
    Statement,
    accuracy_of,
    count_of,
    cw_distance,
    intervals_compared,
    mean_ci,
    pct,
    rate_ci,
    robust_text,
    separated,
    success_of,
)
from defdistill.experiments.report.soft_labels import soft_label_convergence
from defdistill.names import AttackId, StatementKind

# the statements the robustness section gives beside its table (and the data set's section does not)
ROBUSTNESS = frozenset({StatementKind.VERDICT, StatementKind.MASKING, StatementKind.ADAPTIVE,
                        StatementKind.ROBUST_ACCURACY})  # fmt: skip


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
        f"{rate_ci(f_base)} attempts against the baseline and {rate_ci(f_top)} against the "
        f"student distilled at T = {top['temperature']:g} ({intervals_compared(f_base, f_top)}; the "
        "attempts of one image are not independent, so read the intervals as too narrow).")  # fmt: skip
    z, zt = pct(success_of(top, AttackId.JSMA_Z)), pct(success_of(top, AttackId.JSMA_ZT))
    cw_rate = pct(success_of(top, AttackId.CW_L2))
    on_zt = AttackId.PGD_CE_ZT if top["temperature"] != 1.0 else AttackId.PGD_CE_F  # Z/1 is F
    pgd = pct(accuracy_of(top, on_zt))
    margin = pct(accuracy_of(top, AttackId.PGD_MARGIN))
    top_verdict = verdict(top)
    if top_verdict is not None:
        # with several seeds the texts differ (numbers in them) while the decision agrees
        text = top_verdict.get("text") or ("apparent robustness is gradient masking, in every seed"
                                           if top_verdict["masking"] else
                                           "no sign of gradient masking, in every seed")  # fmt: skip
        say(StatementKind.VERDICT, f"Masking checks on the T = {top['temperature']:g} student (the rule "
                                   f"`defdistill audit` applies): {text}.")  # fmt: skip
    if masking_detected(result):
        lead = ("**The paper's attack is stopped by gradient masking.**" if _robust_residue(top, base)
                else "**This is gradient masking, not robustness.**")  # fmt: skip
        say(StatementKind.MASKING,
            f"{lead} The same JSMA on the logits Z "
            f"succeeds on {z} of attempts and on softmax(Z/T) with the training "
            f"temperature on {zt}; Carlini & Wagner L2 succeeds on {cw_rate}, "
            f"{cw_distance(base, top)}; PGD L∞ leaves {pgd} accuracy with cross-entropy on the "
            f"logits divided by the training temperature and {margin} with the margin loss on the "
            "logits. Distillation saturates the deployed softmax so that its gradient vanishes in "
            "float32; the attacks that do not differentiate it still find adversarial examples.")  # fmt: skip
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
            f"The median gradient amplitude of the deployed softmax "
            f"{'falls' if logs[-1] <= logs[0] else 'rises'} from 10^{logs[0]:.1f} "
            f"(baseline) to 10^{logs[-1]:.1f} at T = {top['temperature']:g}, "
            f"{abs(logs[0] - logs[-1]):.1f} orders of magnitude (mean log10 over the images: "
            f"{mean_ci(means[0])} and {mean_ci(means[1])}, {intervals_compared(*means)}); in float32, "
            f"the precision attacks compute in, {count_of(top['gradients'].get('zero'))} measured "
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
            + ", ".join(f"{e:.3g} nats (teacher accuracy {fmt(None if a is None else 100 * a, '.2f', '%')})"
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
    for row in adversarial(result["models"]):
        if top is not None:
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


def _robust_intervals(top: dict, base: dict) -> list[dict | None]:
    """The unconditional robust-accuracy intervals of the hottest student and of the baseline."""
    return [(r.get("robust_accuracy") or {}).get("unconditional_interval") for r in (top, base)]


def _robust_residue(top: dict, base: dict) -> bool:
    """Whether the hottest student keeps a robust accuracy whose interval lies above the baseline's."""
    student, baseline = _robust_intervals(top, base)
    if student is None or baseline is None:
        return False
    return bool(separated(student, baseline)) and student["rate"] > baseline["rate"]


def _robust_sentence(top: dict, base: dict) -> str:
    """Robust accuracy (AutoAttack's convention) of the hottest student and of the baseline; a
    residue above the baseline's is named with the clean accuracy it came with."""
    attacks = ", ".join((top.get("robust_accuracy") or {}).get("attacks") or [])
    robust = _robust_intervals(top, base)
    text = (f"Robust accuracy at the primary L∞ budget, per image (correctly classified and fooled by "
            f"none of {attacks}; a clean error counts as a failure): T = {top['temperature']:g} student "
            f"{robust_text(top)}; baseline {robust_text(base)} ({intervals_compared(*robust)}).")  # fmt: skip
    if not _robust_residue(top, base):
        return text + (" The reproduction's attacks (no APGD, no Square) bound it from above; "
                       "`defdistill audit` adds them.")
    drop = top.get("accuracy_variation_pp")
    cost = ("" if drop is None else
            f", at a clean accuracy {abs(drop):.1f} pp {'below' if drop < 0 else 'above'} the baseline's")
    return text + (f" The student keeps more than the baseline{cost}. That is an upper bound from the "
                   "reproduction's attacks (no APGD, no Square), and not robustness bought by "
                   "distillation until `defdistill audit` leaves it too and an undistilled network "
                   "of the same clean accuracy does not have it.")  # fmt: skip


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
        f"{robust_text(row)} under the attacks of the table (verdict: {decided}), where the "
        f"T = {top['temperature']:g} student has {robust_text(top)} ({intervals_compared(*robust)}). "
        "`defdistill audit` measures it with APGD and Square too."
    )



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
        f"succeeds on {rate_ci(scaled.get('jsma_f'))} attempts, against {rate_ci(base.get('jsma_f'))} "
        f"on the baseline and {rate_ci(student.get('jsma_f'))} on the T = {t:g} student; JSMA on Z "
        f"on {rate_ci(scaled.get('jsma_z'))} (baseline {rate_ci(base.get('jsma_z'))}); "
        f"{count_of(scaled.get('zero_jacobian'))} images have an exactly zero float32 Jacobian: "
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
        f"{rate_ci(student.get('jsma_f'))} attempts in float32, {rate_ci(student64.get('jsma_f'))} in "
        f"float64 and {rate_ci(student.get('jsma_f_exact'))} with the pair chosen in exact "
        f"arithmetic; exactly zero Jacobians: {count_of(student.get('zero_jacobian'))} images in float32, "
        f"{count_of(student64.get('zero_jacobian'))} in float64: {reading}.")  # fmt: skip
    return [scale, precision]

