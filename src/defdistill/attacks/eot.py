"""Expectation over Transformation (EOT): attack a randomised model's expected output.

Athalye, Carlini & Wagner 2018, arXiv:1802.00420, Section 4.3 (after Athalye, Engstrom,
Ilyas & Kwok 2018, arXiv:1707.07397): when a defence draws a random transformation at
every forward pass, the gradient of one draw is a noisy estimate; EOT follows the
gradient of the expectation, estimated by averaging ``samples`` draws.
"""

from __future__ import annotations

import torch
from torch import nn


class EOT(nn.Module):
    """The mean of ``samples`` forward passes of ``model`` (optionally of ``x`` plus noise).

    The gradient of the mean of the logits is the mean of the ``samples`` draws' logit
    gradients, so any gradient attack given this model (:class:`~defdistill.attacks.PGD`,
    :class:`~defdistill.attacks.APGD`) follows the expected gradient. The draws run as one
    batch of ``samples · N`` inputs. With ``noise > 0`` each draw sees ``x + noise · N(0, I)``
    (not clipped): the gradient averaged over a small neighbourhood of ``x``, with which
    Tramèr et al. 2020 (arXiv:2002.08347, Section 7) attack discontinuous models (k-WTA).

    Success measured on this wrapper is the expected model's; evaluate the examples on the
    model itself to report what the defence does with one draw.

    Args:
        model: the model, returning logits; its own randomness is drawn from torch's global
            generator as usual.
        samples: forward passes averaged, >= 1.
        noise: standard deviation of Gaussian noise added to the input of each draw, >= 0.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from defdistill.attacks import PGD
        >>> from defdistill.attacks.eot import EOT
        >>> class Noisy(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        ...     def forward(self, x):
        ...         return self.net(x + 0.1 * torch.randn_like(x))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
        >>> x_adv = PGD(eps=0.1, steps=5).perturb(EOT(Noisy(), samples=8), x, y)
        >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
        True
    """

    def __init__(self, model: nn.Module, samples: int = 10, noise: float = 0.0) -> None:
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1, got {samples!r}")
        if isinstance(noise, bool) or not isinstance(noise, float | int) or not noise >= 0:
            raise ValueError(f"noise must be a number >= 0, got {noise!r}")
        self.model = model
        self.samples = samples
        self.noise = float(noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.repeat(self.samples, *([1] * (x.dim() - 1)))
        if self.noise:
            batch = batch + self.noise * torch.randn_like(batch)
        logits = self.model(batch)
        return logits.view(self.samples, len(x), -1).mean(0)


class _NESGradient(torch.autograd.Function):
    """Forward: the model's logits; backward: their vector-Jacobian product estimated from
    forward passes only (antithetic Gaussian sampling)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, wrapper: NES) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.wrapper = wrapper
        with torch.no_grad():
            return wrapper.model(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        w: NES = ctx.wrapper
        total = torch.zeros_like(x)
        with torch.no_grad():
            for _ in range(w.samples):
                u = torch.randn_like(x)
                up = (w.model(x + w.sigma * u) * grad_output).sum(1)
                down = (w.model(x - w.sigma * u) * grad_output).sum(1)
                total += ((up - down) / (2 * w.sigma)).view(-1, *([1] * (x.dim() - 1))) * u
        return total / w.samples, None


class NES(nn.Module):
    """The model's logits, with a gradient estimated from forward passes only.

    Natural evolution strategies (Ilyas, Engstrom, Athalye & Lin 2018, arXiv:1804.08598;
    SPSA in Uesato et al. 2018, arXiv:1802.05666, is the same idea): the gradient of the
    Gaussian smoothing of ``f`` at ``x`` is ``E[f(x + σu) u] / σ``, estimated with ``samples``
    antithetic pairs ``f(x ± σu)``. It exists where the model's own gradient is zero or
    undefined (quantisation, thermometer encoding), so APGD or PGD given this wrapper
    attack a shattered model without knowing its layers. The forward pass is the model's.

    Args:
        model: the model, returning logits (never differentiated).
        samples: antithetic pairs per gradient estimate, >= 1 (2 · samples forward passes).
        sigma: the smoothing's standard deviation, > 0.
    """

    def __init__(self, model: nn.Module, samples: int = 16, sigma: float = 0.05) -> None:
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1, got {samples!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, float | int) or not sigma > 0:
            raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
        self.model = model
        self.samples = samples
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NESGradient.apply(x, self)
