"""What a reader must know to read the numbers: how the images were drawn, and where the run
differs from the paper's protocol, with the data set's own numbers.
"""

from __future__ import annotations

import math

from defdistill.experiments.report.columns import attack_value
from defdistill.experiments.report.data import (
    PAPER_DATASET,
    distilled,
)
from defdistill.names import AttackId, Precision


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
        epochs = (f"the paper's {profile['epochs']} epochs" if profile["epochs"] == 50
                  else f"{profile['epochs']} epoch(s) instead of the paper's 50")  # fmt: skip
        notes.append(f"Profile `{profile['name']}`: {epochs}{images}{limit}; accuracies are therefore "
                     "below the paper's.")  # fmt: skip
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
    counts = [(r, attack_value(r, AttackId.JSMA_F, "samples_without_success"),
               attack_value(r, AttackId.JSMA_F, "samples")) for r in result["models"]]  # fmt: skip
    exhausted = [f"{r['name']} ({k} of {n} images)" for r, k, n in counts if k]
    notes.append(
        "rho_adv counts an image on which JSMA on F exhausted its budget (no targeted attempt "
        f"succeeded within gamma: {round(cap * features / 100):,} of {features:,} input features, "
        f"{cap:.2f} %) at that cap. JSMA is greedy: such a value bounds what JSMA on F needs, not the "
        "model's minimum perturbation (attacks on the logits often succeed on the same images). `≥` "
        "marks a value with such images"
        + (f"; here JSMA on F exhausted its budget on {', '.join(exhausted)}" if exhausted else "")
        + f".{mnist_note} `results.json` also has `rho_adv_successful_percent` (broken images only)."
    )
    notes.append(
        "Training follows the paper: the loss at T, its SGD settings, nothing reparametrised (no "
        "head scaling). Not from the paper: He initialisation (the paper does not state one), and "
        "every network from a seed of its own derived from the run's seed. Plain training at T "
        f"divides the loss's gradient by T{_accuracy_cost(result['models'], profile['epochs'])}."
    )
    notes.extend(_precision_note(result["models"]))
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


def _precision_note(models: list[dict]) -> list[str]:
    """The networks trained in bfloat16 (``--precision auto`` on hardware that computes it
    natively, or ``bf16``); none when every network trained in float32, as the paper's."""
    trained = [r for r in models if not r.get("shipped")]  # a shipped control trained before
    bf16 = [r["name"] for r in trained if r.get("precision") == Precision.BF16]
    if not bf16:
        return []
    which = "every network this run trained" if len(bf16) == len(trained) else ", ".join(bf16)
    return [f"Training arithmetic: bfloat16 autocast on channels-last inputs for {which} (`--precision "
            "auto` chooses it where the hardware computes bfloat16 natively); weights, loss, soft "
            "labels, gradients, attacks and every evaluation are float32. bfloat16 training was "
            "validated against float32 at the quick profile (docs/training.md)."]


def _accuracy_cost(models: list[dict], epochs: int) -> str:
    """What dividing the gradient by T cost this run's students in accuracy."""
    students = distilled(models)
    if not students:
        return ""
    if epochs < 50:
        worst = min(students, key=lambda r: r["accuracy_variation_pp"])
        if worst["accuracy_variation_pp"] >= 0:
            return ""
        return (", so short profiles leave the hottest students less accurate (here the T = "
                f"{worst['temperature']:g} student is {-worst['accuracy_variation_pp']:.2f} pp below "
                "the baseline)")  # fmt: skip
    farthest = max(students, key=lambda r: abs(r["accuracy_variation_pp"]))
    return (f"; at the paper's {epochs} epochs the student farthest from the baseline's accuracy is "
            f"the T = {farthest['temperature']:g} one, {farthest['accuracy_variation_pp']:+.2f} pp")
