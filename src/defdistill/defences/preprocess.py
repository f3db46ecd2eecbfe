"""Input transformations put in front of a network as a defence.

* :class:`BitDepthReduction`: feature squeezing by colour-depth reduction (Xu, Evans & Qi,
  NDSS 2018, arXiv:1704.01155): zero gradient almost everywhere.
* :class:`ThermometerEncoding`: each pixel as ``levels`` binary channels (Buckman, Roy,
  Raffel & Goodfellow, ICLR 2018): the network must be trained on the encoding; zero
  gradient almost everywhere. :meth:`ThermometerEncoding.soft` is the continuous
  relaxation Athalye et al. 2018 (arXiv:1802.00420, Section 5.2.1) differentiate instead.
* :class:`RandomResizePad`: random downscaling and random zero padding back to the input
  size (Xie, Wang, Zhang, Ren & Yuille, ICLR 2018, arXiv:1711.01991): stochastic.
* :class:`GaussianNoise`: Gaussian noise added at inference: stochastic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PREPROCESS = "preprocess"  # the name of the preprocessing layer of a Preprocessed model


def _check_positive(name: str, value: float, integer: bool = False) -> None:
    kinds = int if integer else float | int
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {kind} > 0, got {value!r}")


class Preprocessed(nn.Module):
    """``network(preprocess(x))``: a defence made of an input transformation and a network.

    Args:
        preprocess: the transformation, stored as the submodule ``"preprocess"``.
        network: the classifier that sees the transformed input, returning logits.
    """

    def __init__(self, preprocess: nn.Module, network: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(x))


class BitDepthReduction(nn.Module):
    """Rounds each input in [0, 1] to ``2**bits`` levels (Xu et al. 2018, arXiv:1704.01155).

    ``round(x · (2^bits - 1)) / (2^bits - 1)``: deterministic; the gradient w.r.t. ``x``
    is exactly zero (``round`` is piecewise constant), the shattered gradient of
    Athalye et al. 2018.

    Args:
        bits: bit depth, >= 1 (Xu et al. use 1 on MNIST).
    """

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        _check_positive("bits", bits, integer=True)
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = 2**self.bits - 1
        return torch.round(x * top) / top


class ThermometerEncoding(nn.Module):
    """``levels`` binary channels per input channel: channel ``i`` is 1 where ``x >= (i + 1) / levels``.

    Buckman et al., "Thermometer encoding: one hot way to resist adversarial examples",
    ICLR 2018. Output ``(N, levels · C, H, W)``, channel-major (``c · levels + i``). The
    indicator is built from ``floor``, so the gradient is exactly zero (connected to the
    graph, not ``None``). A network behind it takes ``levels · C`` input channels and must
    be trained on the encoding.

    Args:
        levels: number of thresholds, >= 2 (Buckman et al. use 16).
    """

    def __init__(self, levels: int = 16) -> None:
        super().__init__()
        _check_positive("levels", levels, integer=True)
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.levels = levels

    def _offsets(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.levels, dtype=x.dtype, device=x.device).view(1, 1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        bucket = torch.floor(x.clamp(0, 1) * self.levels).unsqueeze(2)  # 0 .. levels
        code = (bucket - self._offsets(x)).clamp(0, 1)  # channel i: 1 where x >= (i + 1) / levels
        return code.reshape(n, c * self.levels, h, w)

    def soft(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous relaxation ``clamp(levels · x - i, 0, 1)``: equal to the encoding at
        the thresholds, linear between them (BPDA's approximation)."""
        n, c, h, w = x.shape
        code = (x.unsqueeze(2) * self.levels - self._offsets(x)).clamp(0, 1)
        return code.reshape(n, c * self.levels, h, w)


class RandomResizePad(nn.Module):
    """Random downscaling then random zero padding back to the input size, per sample.

    Xie et al. 2018 (arXiv:1711.01991) resize a 299 image to ``r ∈ [299, 331)`` and pad it
    at a random offset to 331; here, to keep the network's input size, the image is
    resized (bilinear) to ``r ∈ [min_size, size]`` and placed at a random offset in a
    zero image of the original ``size``. A new draw at every forward pass (the global
    torch generator): two passes of the same input differ.

    Args:
        min_size: smallest side after resizing, in pixels, >= 1.
    """

    def __init__(self, min_size: int = 22) -> None:
        super().__init__()
        _check_positive("min_size", min_size, integer=True)
        self.min_size = min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.min_size > min(h, w):
            raise ValueError(f"min_size {self.min_size} exceeds the image size {h}x{w}")
        shrink = torch.randint(0, min(h, w) - self.min_size + 1, (n,), device=x.device).to(x.dtype)
        rows, cols = h - shrink, w - shrink  # the resized image's sides
        # offset of its top-left corner, in whole pixels, uniform over the free margin
        top = torch.floor(torch.rand(n, device=x.device, dtype=x.dtype) * (shrink + 1))
        left = torch.floor(torch.rand(n, device=x.device, dtype=x.dtype) * (shrink + 1))
        # affine_grid maps output coordinates in [-1, 1] to input coordinates: the resized
        # image's edges (output) to the input's edges (-1 and 1)
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = w / cols
        theta[:, 1, 1] = h / rows
        theta[:, 0, 2] = (w - 2 * left - cols) / cols
        theta[:, 1, 2] = (h - 2 * top - rows) / rows
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class GaussianNoise(nn.Module):
    """``clamp(x + sigma · N(0, I), 0, 1)``, a new draw at every forward pass.

    Noise injection at inference, the stochastic defence Athalye et al. 2018
    (arXiv:1802.00420, Section 4.3) break with expectation over transformation.

    Args:
        sigma: the noise's standard deviation, > 0.
    """

    def __init__(self, sigma: float = 0.2) -> None:
        super().__init__()
        _check_positive("sigma", sigma)
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.sigma * torch.randn_like(x)).clamp(0, 1)
