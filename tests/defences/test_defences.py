"""The defence wrappers: shapes, randomness where intended, gradients where intended."""

import pytest
import torch
from torch import nn

from defdistill.defences import (
    BitDepthReduction,
    GaussianNoise,
    KWinnersTakeAll,
    Preprocessed,
    RandomResizePad,
    ThermometerEncoding,
    kwta_network,
)


def _input_grad(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(module(x).sum(), x)
    return g


def test_bit_depth_rounds_to_levels_with_zero_gradient():
    x = torch.rand(4, 1, 5, 5)
    out = BitDepthReduction(bits=2)(x)
    assert out.shape == x.shape
    assert set((out * 3).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert torch.allclose(out * 3, (out * 3).round())
    assert (out - x).abs().max() <= 1 / 6 + 1e-6
    assert torch.equal(BitDepthReduction(2)(x), out)  # deterministic
    assert torch.count_nonzero(_input_grad(BitDepthReduction(2), x)) == 0


def test_thermometer_encoding_counts_thresholds_and_its_soft_version_matches_at_them():
    enc = ThermometerEncoding(levels=4)
    x = torch.tensor([0.0, 0.2, 0.25, 0.6, 1.0]).view(1, 5, 1, 1)
    code = enc(x)
    assert code.shape == (1, 20, 1, 1)
    # channel-major: input channel c holds thresholds 1/4, 2/4, 3/4, 4/4
    assert code.view(5, 4).sum(1).tolist() == [0, 0, 1, 2, 4]
    grid = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 4, 1, 1)
    assert torch.equal(enc.soft(grid), enc(grid))  # on the thresholds the relaxation is exact
    assert enc.soft(x)[0, 4].item() == pytest.approx(0.8)  # between them, linear: 4 · 0.2
    assert torch.count_nonzero(_input_grad(enc, torch.rand(2, 1, 3, 3))) == 0
    assert torch.count_nonzero(_input_grad(enc.soft, torch.rand(2, 1, 3, 3))) > 0


def test_random_resize_pad_keeps_the_shape_differs_per_pass_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    layer = RandomResizePad(min_size=22)
    a, b = layer(x), layer(x)
    assert a.shape == x.shape
    assert not torch.equal(a, b)
    assert torch.allclose(RandomResizePad(min_size=28)(x), x, atol=1e-5)  # no resize, no pad
    assert torch.count_nonzero(_input_grad(layer, x)) > 0
    with pytest.raises(ValueError, match="min_size"):
        RandomResizePad(min_size=30)(x)


def test_gaussian_noise_is_random_and_stays_in_range():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 6, 6)
    noise = GaussianNoise(sigma=0.3)
    a, b = noise(x), noise(x)
    assert not torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(sigma=0)


def test_kwta_keeps_the_top_fraction_per_sample():
    x = torch.arange(20.0).view(2, 10) * torch.tensor([[1.0], [-1.0]])
    out = KWinnersTakeAll(ratio=0.3)(x)
    assert out[0].tolist() == [0] * 7 + [7.0, 8.0, 9.0]
    assert out[1].tolist() == [-10.0, -11.0, -12.0] + [0] * 7
    with pytest.raises(ValueError, match="ratio"):
        KWinnersTakeAll(ratio=0)


def test_kwta_network_replaces_every_relu_and_preprocessed_names_its_layer():
    net = kwta_network("mnist_cnn", 1, 28, 10, ratio=0.2)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    assert sum(isinstance(m, KWinnersTakeAll) for m in net.modules()) == 6
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    model = Preprocessed(ThermometerEncoding(4), kwta_network("mnist_cnn", 4, 28, 10))
    assert "preprocess" in dict(model.named_modules())
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
