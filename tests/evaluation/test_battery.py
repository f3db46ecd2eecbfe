"""The battery: per-image outcomes, the union that makes robust accuracy, and the evidence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defdistill.evaluation.battery import AttackSpec, BatteryResult, Outcome, run_battery
from defdistill.evaluation.threats import ThreatModel
from defdistill.names import AttackId, Norm

PRIMARY = ThreatModel(Norm.LINF, 0.3)


class FirstPixel(nn.Module):
    """Predicts class ``round(x[0])``: which images are correct is set by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x.flatten(1)[:, :1]
        return torch.cat([1 - first, first], dim=1) * 10


def fooling(images: list[int]):
    """An attack that fools exactly the attacked images at the given positions."""

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        fooled = torch.zeros(len(x), dtype=torch.bool)
        fooled[images] = True
        return Outcome(fooled, int(fooled.sum()), len(x))

    return run


@pytest.fixture
def drawn() -> tuple[torch.Tensor, torch.Tensor]:
    # 8 drawn images; the model gets images 2 and 5 wrong, so 6 are attacked
    x = torch.zeros(8, 1, 2, 2)
    y = torch.zeros(8, dtype=torch.long)
    x[[2, 5], 0, 0, 0] = 1.0
    return x, y


def test_robust_accuracy_is_the_union_per_image_below_every_attack(drawn):
    x, y = drawn
    specs = [
        AttackSpec(AttackId.PGD_CE_F, "A", fooling([0, 1]), PRIMARY, worst_case=True),
        AttackSpec(AttackId.PGD_MARGIN, "B", fooling([1, 4]), PRIMARY, worst_case=True),
        AttackSpec(AttackId.SQUARE, "C", fooling([5]), PRIMARY, gradient=False, worst_case=True),
        AttackSpec(AttackId.APGD_CE_L2, "D", fooling([0, 1, 2, 3, 4, 5]), ThreatModel(Norm.L2, 2.0)),
    ]
    result = run_battery(FirstPixel(), specs, x, y)
    assert result.clean.tolist() == [True, True, False, True, True, False, True, True]
    accuracies = [result[a].accuracy.rate for a in (AttackId.PGD_CE_F, AttackId.PGD_MARGIN, AttackId.SQUARE)]
    assert accuracies == [4 / 6, 4 / 6, 5 / 6]
    # fooled by A, B or C: attacked images 0, 1, 4, 5 -> 2 of 6 survive; D is not at the primary budget
    conditional = result.robust_accuracy_conditional()
    assert (conditional.k, conditional.n) == (2, 6)
    assert conditional.rate < min(accuracies)  # strictly: the attacks fool different images
    # unconditional: the clean errors count as failures, over the 8 drawn images
    unconditional = result.robust_accuracy()
    assert (unconditional.k, unconditional.n) == (2, 8)
    # attacked positions 0..5 are drawn images 0, 1, 3, 4, 6, 7: drawn 3 and 4 survive
    assert result.robust().tolist() == [False, False, False, True, True, False, False, False]
    assert result.robust_accuracy_dict()["attacks"] == ["pgd-ce-f", "pgd-margin", "square"]


def test_evidence_comes_from_the_attack_ids(drawn):
    x, y = drawn
    specs = [
        AttackSpec(AttackId.PGD_CE_F, "A", fooling([0]), PRIMARY, worst_case=True),
        AttackSpec(AttackId.PGD_MARGIN, "B", fooling([0, 1, 2]), PRIMARY, worst_case=True),
        AttackSpec(AttackId.SQUARE, "C", fooling([0, 1, 2, 3, 4]), PRIMARY, gradient=False, worst_case=True),
    ]
    evidence = run_battery(FirstPixel(), specs, x, y).evidence(saturated_fraction=0.5)
    assert evidence.pgd_f == pytest.approx(1 / 6) and evidence.pgd_margin == pytest.approx(3 / 6)
    assert evidence.gradient == pytest.approx(3 / 6)  # the best gradient attack, Square excluded
    assert evidence.gradient_free == pytest.approx(5 / 6)
    assert evidence.jsma_f is None and evidence.transfer is None  # not run: their checks are skipped
    # the counts, not bare rates: the verdict states n and the interval
    assert (evidence.robust_accuracy.k, evidence.robust_accuracy.n) == (1, 8)
    assert (evidence.robust_accuracy_conditional.k, evidence.robust_accuracy_conditional.n) == (1, 6)
    assert evidence.saturated_fraction == 0.5


def test_samples_limit_an_attack_to_the_first_correct_drawn_images_and_the_json_round_trips(drawn):
    x, y = drawn
    specs = [AttackSpec(AttackId.JSMA_F, "J", fooling([1]), samples=3),
             AttackSpec(AttackId.PGD_CE_F, "A", fooling([2]), PRIMARY, worst_case=True)]  # fmt: skip
    result = run_battery(FirstPixel(), specs, x, y)
    assert len(result[AttackId.JSMA_F].fooled) == 3 and result[AttackId.JSMA_F].success.n == 3
    written = result.to_dict()
    assert written["attacks"]["jsma-f"]["fooled_images"] == [1]
    assert written["attacks"]["pgd-ce-f"]["accuracy_interval"]["k"] == 5
    again = BatteryResult.from_dict(written)
    assert again.to_dict() == {**written}
    assert again.robust_accuracy() == result.robust_accuracy()


def test_worst_case_attacks_must_share_their_images(drawn):
    x, y = drawn
    specs = [AttackSpec(AttackId.PGD_CE_F, "A", fooling([0]), PRIMARY, worst_case=True, samples=2),
             AttackSpec(AttackId.PGD_MARGIN, "B", fooling([0]), PRIMARY, worst_case=True)]  # fmt: skip
    with pytest.raises(ValueError, match="same images"):
        run_battery(FirstPixel(), specs, x, y).robust_accuracy()


class Saturating(nn.Module):
    """Class ``round(x[0])``, with logits 1000x larger where ``x[3] = 1``: there the float32
    softmax saturates and JSMA on F cannot move (its image is censored at the cap)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        first = flat[:, :1]
        return torch.cat([1 - first, first], dim=1) * 10 * (1 + 999 * flat[:, 3:4])


def test_rho_adv_interval_is_over_the_attacked_images_with_censored_ones_at_the_cap():
    from defdistill.evaluation import battery as b
    from defdistill.evaluation.stats import MeanEstimate

    x = torch.zeros(6, 1, 2, 2)
    x[[1, 4], 0, 1, 1] = 1.0  # saturated: JSMA on F exhausts its budget on these two
    y = torch.zeros(6, dtype=torch.long)
    out = b.jsma(gamma=1.0, seed=3)(Saturating(), x, y)
    details = out.details
    assert details["samples_without_success"] == 2
    cap = details["rho_adv_censored_at_percent"]
    # per image: 2 of 4 features (one pair) where JSMA succeeds, the cap where it does not
    per_image = [50.0, cap, 50.0, 50.0, cap, 50.0]
    want = MeanEstimate.of(per_image, seed=3).to_dict()
    assert details["rho_adv_interval"] == pytest.approx(want)
    assert details["rho_adv_interval"]["mean"] == pytest.approx(details["rho_adv_percent"])
    assert details["rho_adv_interval"]["n"] == 6


def test_clean_errors_after_the_last_correct_image_still_count_when_every_correct_one_was_attacked():
    # 6 drawn images; the last two are clean errors, every correct one is attacked
    x, y = torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long)
    x[[4, 5], 0, 0, 0] = 1.0
    specs = [AttackSpec(AttackId.PGD_CE_F, "A", fooling([0]), PRIMARY, worst_case=True)]
    result = run_battery(FirstPixel(), specs, x, y)
    assert (result.robust_accuracy().k, result.robust_accuracy().n) == (3, 6)
    # with a sample limit that leaves correct images unattacked, the draw ends at the last attacked one
    limited = run_battery(FirstPixel(), [AttackSpec(AttackId.PGD_CE_F, "A", fooling([0]), PRIMARY,
                                                    worst_case=True, samples=2)], x, y)  # fmt: skip
    assert (limited.robust_accuracy().k, limited.robust_accuracy().n) == (1, 2)


def test_a_model_that_gets_no_drawn_image_right_has_nothing_attacked_and_nothing_robust(drawn):
    x, y = drawn
    y = 1 - y  # now only images 2 and 5 are right; with them wrong too, none is
    y[[2, 5]] = 0

    def never_called(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
        raise AssertionError("an attack ran on no image")

    spec = AttackSpec(AttackId.PGD_CE_F, "PGD", never_called, PRIMARY, worst_case=True)
    result = run_battery(FirstPixel(), [spec], x, y)
    nothing = {"k": 0, "n": 0, "rate": None, "low": None, "high": None}
    assert result.attacks[spec.name].success.to_dict() == nothing
    found = result.to_dict()["robust_accuracy"]
    assert found["unconditional_interval"]["k"] == 0 and found["unconditional_interval"]["n"] == 8


class Record:
    """An in-memory :class:`StepRecord`."""

    def __init__(self) -> None:
        self.steps: dict[str, dict] = {}

    def load(self, step: str) -> dict | None:
        return self.steps.get(step)

    def save(self, step: str, result: dict) -> None:
        self.steps[step] = result


def must_not_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Outcome:
    raise AssertionError("a finished attack was run again")


def test_a_battery_resumes_from_its_record_of_finished_attacks(drawn):
    x, y = drawn
    first = [AttackSpec(AttackId.PGD_CE_F, "A", fooling([0, 1]), PRIMARY, worst_case=True),
             AttackSpec(AttackId.PGD_MARGIN, "B", fooling([1, 4]), PRIMARY, worst_case=True)]  # fmt: skip
    record = Record()
    whole = run_battery(FirstPixel(), first, x, y, record)
    assert list(record.steps) == ["pgd-ce-f", "pgd-margin"]
    # the rerun: A is reused; B's record is of other images (3 attacked), so B runs again
    record.steps["pgd-margin"] = {**record.steps["pgd-margin"], "samples": 3}
    again = [AttackSpec(AttackId.PGD_CE_F, "A", must_not_run, PRIMARY, worst_case=True),
             AttackSpec(AttackId.PGD_MARGIN, "B", fooling([1, 4]), PRIMARY, worst_case=True)]  # fmt: skip
    resumed = run_battery(FirstPixel(), again, x, y, record)
    assert resumed.to_dict() == whole.to_dict() | {"attacks": {
        k: {**a, "seconds": resumed[k].seconds} for k, a in whole.to_dict()["attacks"].items()}}
    assert resumed["pgd-ce-f"].seconds == whole["pgd-ce-f"].seconds  # the time when it ran
    assert record.steps["pgd-margin"]["samples"] == 6


def test_a_recorded_attack_that_does_not_read_back_is_run_again(drawn):
    x, y = drawn
    record = Record()
    record.steps["pgd-ce-f"] = {"samples": 6, "fooled_images": "not a list"}  # damaged, right size
    spec = AttackSpec(AttackId.PGD_CE_F, "A", fooling([0, 1]), PRIMARY, worst_case=True)
    result = run_battery(FirstPixel(), [spec], x, y, record)
    assert result["pgd-ce-f"].fooled.tolist() == [True, True, False, False, False, False]
    assert record.steps["pgd-ce-f"]["fooled_images"] == [0, 1]
