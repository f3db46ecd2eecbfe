import torch
from attack_helpers import blobs, linear, train

from defdistill.attacks import PGD


def test_without_early_stop_every_sample_takes_all_steps_and_goes_deeper():
    x, y = blobs(60, 10, 2, seed=4)
    model = train(linear(10, 2, seed=4), x, y)
    x = x.clamp(0, 1)
    early = PGD(eps=0.5, steps=20)(model, x, y)
    full = PGD(eps=0.5, steps=20, early_stop=False)(model, x, y)
    assert (full.info["iterations"] == 20).all()
    assert (early.info["iterations"] <= 20).all() and (early.info["iterations"] < 20).any()
    both = early.success & full.success
    assert both.any()

    def margin(x_adv):  # how far past the boundary: other logit minus true logit
        z = model(x_adv)
        return (z.gather(1, (1 - y)[:, None]) - z.gather(1, y[:, None])).squeeze(1)

    with torch.no_grad():
        assert (margin(full.x_adv)[both] >= margin(early.x_adv)[both] - 1e-6).all()
        assert margin(full.x_adv)[both].mean() > margin(early.x_adv)[both].mean()


def test_non_finite_logits_are_rejected():
    import pytest
    from torch import nn

    from defdistill.attacks import FGSM

    class NaNModel(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 3), float("nan"))

    with pytest.raises(ValueError, match="NaN or infinite logits"):
        FGSM(eps=0.1)(NaNModel(), torch.rand(2, 4), torch.tensor([0, 1]))
