"""The answer to "is defensive distillation robust?" across the run's data sets, from the
masking verdicts stored in the rows (the audit's rule decided them; nothing here does)."""

from __future__ import annotations

from defdistill.experiments.report.columns import attack_value
from defdistill.experiments.report.data import (
    baseline,
    dataset_title,
    distilled,
    hottest,
    masking_detected,
    verdict,
)
from defdistill.experiments.report.phrases import (
    count_of,
    cw_distance,
    rate_ci,
    robust_text,
)
from defdistill.names import AttackId


def conclusion(results: dict) -> list[str]:
    """The answer to "is defensive distillation robust?", one paragraph per kind of outcome.

    Data sets whose hottest student the masking rule flags get the masking explanation;
    the others get their own numbers, since a student the paper's attack still breaks has
    nothing to mask, and the reproduction's attacks (no APGD, no Square) only bound its
    robust accuracy from above.
    """
    swept = {name: r for name, r in results.items() if distilled(r["models"])}
    masked = [name for name, r in swept.items() if masking_detected(r)]
    tops = {name: top for name, r in swept.items() if (top := hottest(r["models"])) is not None}
    paragraphs = []
    if masked:
        paragraphs.append(
            f"**No.** On {' and '.join(dataset_title(n) for n in masked)}, the distilled "
            "networks resist the paper's attack only because their deployed logits are larger: "
            "the softmax saturates and its gradient underflows, so attacks that differentiate the "
            "probabilities stall. Attacks on the logits (Carlini & Wagner, arXiv:1607.04311, "
            "arXiv:1608.04644) or on the logits divided by the training temperature still find "
            "adversarial examples: the defence masks gradients."
            + "".join(f" {_masked(dataset_title(n) if len(masked) > 1 else None, swept[n], tops[n])}"
                      for n in masked if n in tops)
        )
    for name, result in swept.items():
        if name not in tops:
            paragraphs.append(f"On {dataset_title(name)}, no distilled network learned (every student "
                              "or its teacher at the chance floor): there is nothing to conclude about "
                              "the defence there.")  # fmt: skip
        elif name not in masked:
            paragraphs.append(_unmasked(dataset_title(name), result, tops[name]))
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


def _masked(title: str | None, result: dict, top: dict) -> str:
    """The numbers behind the masking paragraph on one data set: how much larger the hottest
    student's logits (``top``) are, and how far C&W had to go."""
    base = baseline(result["models"])
    cold, hot = base.get("mean_max_logit"), top.get("mean_max_logit")
    scale = (f"the T = {top['temperature']:g} student's logits are {hot / cold:.0f} times "
             f"the baseline's (mean max logit {hot:,.0f} against {cold:.1f})"
             if cold is not None and hot is not None and cold > 0 else
             f"the T = {top['temperature']:g} student's logits are scaled up")  # fmt: skip
    cw = rate_ci(attack_value(top, AttackId.CW_L2, "success_interval"))
    text = f"{scale}, and C&W L2 succeeds on {cw} images {cw_distance(base, top)}."
    return f"On {title}, {text}" if title else text[0].upper() + text[1:]


def _unmasked(title: str, result: dict, top: dict) -> str:
    """The paragraph on a data set whose hottest student (``top``) the masking rule does not flag."""
    base = baseline(result["models"])
    if verdict(top) is None:  # several seeds, verdicts that disagree
        return (f"On {title}, the seeds disagree on whether the T = {top['temperature']:g} student "
                "masks gradients: read each seed's masking checks in `results.json` before "
                "concluding.")  # fmt: skip
    drop = top["accuracy_variation_pp"]
    return (
        f"On {title}, no masking check fires on the T = {top['temperature']:g} student: "
        f"{count_of(top['gradients'].get('zero'))} measured images have an exactly zero softmax "
        "Jacobian, and the paper's attack still succeeds on "
        f"{rate_ci(attack_value(top, AttackId.JSMA_F, 'success_interval'))} attempts (baseline "
        f"{rate_ci(attack_value(base, AttackId.JSMA_F, 'success_interval'))}). Its robust accuracy "
        "under the table's attacks is "
        f"{robust_text(top)} (baseline {robust_text(base)}) and C&W L2 succeeds "
        f"{cw_distance(base, top)}, at a clean accuracy "
        f"{abs(drop):.1f} pp {'below' if drop < 0 else 'above'} the baseline's. That is an upper "
        "bound on its robust accuracy from PGD and C&W alone: `defdistill audit` adds APGD and "
        "Square before anything is called robust."
    )

