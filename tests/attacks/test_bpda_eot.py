"""BPDA and EOT: structure-aware wrappers that let PGD/APGD attack masked models."""

import pytest
import torch
from torch import nn

from defdistill.attacks import APGD, EOT, NES, PGD, bpda
from defdistill.defences import BitDepthReduction, GaussianNoise, Preprocessed, ThermometerEncoding


def _linear(seed=0, in_features=16):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 3))


def test_bpda_keeps_the_forward_pass_and_restores_the_gradient():
    model = Preprocessed(BitDepthReduction(2), _linear())
    wrapped = bpda(model, "preprocess")
    x = torch.rand(5, 1, 4, 4, requires_grad=True)
    assert torch.equal(wrapped(x), model(x))
    (g_masked,) = torch.autograd.grad(model(x).sum(), x)
    (g_bpda,) = torch.autograd.grad(wrapped(x).sum(), x)
    (g_plain,) = torch.autograd.grad(model.network(x).sum(), x)
    assert torch.count_nonzero(g_masked) == 0
    assert torch.allclose(g_bpda, g_plain)  # identity on the backward pass: the network's gradient
    assert isinstance(model.preprocess, BitDepthReduction)  # the original is untouched


def test_bpda_lets_pgd_break_a_quantised_model_it_cannot_move_otherwise():
    model = Preprocessed(BitDepthReduction(3), _linear())
    x = torch.rand(20, 1, 4, 4)
    y = model(x).argmax(1)
    blind = PGD(eps=0.5, steps=20, random_start=False)(model, x, y).success_rate
    aware = PGD(eps=0.5, steps=20, random_start=False)(bpda(model, "preprocess"), x, y).success_rate
    assert blind == 0.0 and aware > 0.8


def test_bpda_with_a_shape_changing_layer_needs_an_approximation():
    enc = ThermometerEncoding(4)
    model = Preprocessed(enc, _linear(in_features=64))
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="approximation"):
        bpda(model, "preprocess")(x)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(bpda(model, "preprocess", enc.soft)(xg).sum(), xg)
    assert torch.count_nonzero(g) > 0
    with pytest.raises(ValueError, match="no submodule 'encoder'"):
        bpda(model, "encoder")


def test_eot_averages_draws_and_its_gradient_is_the_mean_gradient():
    torch.manual_seed(0)
    model = Preprocessed(GaussianNoise(0.5), _linear())
    x = torch.rand(3, 1, 4, 4)
    eot = EOT(model, samples=4000)
    # a linear network: the expected logits of the noisy input, up to clipping, are near the clean ones
    assert (eot(x) - model.network(x.clamp(0, 1))).abs().max() < 0.2
    torch.manual_seed(1)
    xg = x.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(EOT(model, 1)(xg)[:, 0].sum(), xg)
    (g2,) = torch.autograd.grad(EOT(model, 1)(xg)[:, 0].sum(), xg)
    (g_many,) = torch.autograd.grad(EOT(model, 2000)(xg)[:, 0].sum(), xg)
    (g_more,) = torch.autograd.grad(EOT(model, 2000)(xg)[:, 0].sum(), xg)
    # one draw's gradient is noisy (clipping zeroes random pixels); the average is stable
    assert (g1 - g2).abs().max() > 0.05
    assert (g_many - g_more).abs().max() < (g1 - g2).abs().max() / 5


def test_eot_works_with_apgd_and_rejects_bad_arguments():
    torch.manual_seed(0)
    model = Preprocessed(GaussianNoise(0.1), _linear())
    x = torch.rand(6, 1, 4, 4)
    y = model.network(x).argmax(1)
    x_adv = APGD(eps=0.3, steps=10).perturb(EOT(model, 8), x, y)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6
    assert (model.network(x_adv).argmax(1) != y).float().mean() > 0.5
    for bad in ({"samples": 0}, {"noise": -1.0}):
        with pytest.raises(ValueError):
            EOT(model, **bad)


def test_nes_estimates_the_gradient_from_forward_passes_only():
    torch.manual_seed(0)
    net = _linear()
    x = torch.rand(4, 1, 4, 4, requires_grad=True)
    (g_true,) = torch.autograd.grad(net(x)[:, 0].sum(), x)
    (g_nes,) = torch.autograd.grad(NES(net, samples=2000, sigma=0.01)(x)[:, 0].sum(), x)
    cosine = torch.nn.functional.cosine_similarity(g_true.flatten(1), g_nes.flatten(1))
    assert (cosine > 0.95).all()  # a linear model: the smoothing's gradient is its own
    quantised = Preprocessed(BitDepthReduction(2), net)
    (g_q,) = torch.autograd.grad(NES(quantised, 500, 0.2)(x)[:, 0].sum(), x)
    assert torch.nn.functional.cosine_similarity(g_true.flatten(1), g_q.flatten(1)).mean() > 0.5
    assert torch.equal(NES(quantised)(x), quantised(x))
    with pytest.raises(ValueError, match="sigma"):
        NES(net, sigma=0)
