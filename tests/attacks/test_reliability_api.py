"""Issue 26, class 7: the Python API never counts a NaN output as a fooled model, and a model
without input gradients is the documented ValueError."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from defdistill.attacks import APGD, FGSM, JSMA, PGD, CarliniWagnerL2, Square


class NanOn(nn.Module):
    """Logits of a fixed linear map, NaN for the inputs whose first pixel is above 0.5."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x.flatten(1))
        return torch.where(x.flatten(1)[:, :1] > 0.5, torch.full_like(z, float("nan")), z)


class Frozen(nn.Module):
    """A model computed under no_grad: it has no gradient w.r.t. its input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.linear(x.flatten(1))


def inputs(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((n, 1, 4, 4), 0.2)
    x[3, 0, 0, 0] = 0.9  # only sample 3 gives NaN logits, the first one does not
    return x, torch.zeros(n, dtype=torch.long)


CASES = {
    "fgsm-nan-on-sample-3": (NanOn, FGSM(eps=0.1), "NaN or infinite logits on sample 3"),
    "pgd-nan-on-sample-3": (NanOn, PGD(eps=0.1, steps=3), "NaN or infinite logits on sample 3"),
    "fgsm-no-input-gradient": (Frozen, FGSM(eps=0.1), "cannot be differentiated w.r.t. its input"),
    "pgd-no-input-gradient": (Frozen, PGD(eps=0.1, steps=3), "cannot be differentiated w.r.t. its input"),
    # C&W's distance term keeps a gradient of its own: autograd alone would not notice
    "cw-no-input-gradient": (Frozen, CarliniWagnerL2(max_iterations=3, binary_search_steps=1),
                             "cannot be differentiated w.r.t. its input"),
    "apgd-no-input-gradient": (Frozen, APGD(eps=0.1, steps=3), "cannot be differentiated w.r.t. its input"),
}  # fmt: skip


def test_a_gradient_free_attack_runs_on_a_model_without_input_gradients():
    x, y = inputs()
    result = Square(eps=0.1, queries=5)(Frozen(), x, y)
    assert result.x_adv.shape == x.shape and (result.x_adv - x).abs().max() <= 0.1 + 1e-6


def test_a_targeted_gradient_attack_refuses_it_too():
    x, y = inputs()
    with pytest.raises(ValueError, match="cannot be differentiated"):
        JSMA()(Frozen(), x, y, target=torch.ones(len(x), dtype=torch.long))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_api_raises_value_error_on_outputs_it_cannot_use(case):
    build, attack, message = CASES[case]
    x, y = inputs()
    with pytest.raises(ValueError, match=message):
        attack(build(), x, y)


def test_finite_outputs_on_every_sample_attack_normally():
    model = NanOn()
    x, y = inputs()
    x[3, 0, 0, 0] = 0.2
    result = FGSM(eps=0.1)(model, x, y)
    assert result.success.shape == (6,) and bool(torch.isfinite(model(result.x_adv)).all())
