"""Gradient amplitudes of the deployed softmax (Papernot et al. 2016, Section V-B, Figure 7).

Per sample, the mean absolute value of the Jacobian of ``softmax(Z / T)`` w.r.t. the
input, in float32 as an attack sees it (:func:`gradient_amplitude`) and as an exact
``log10`` far below float range (:func:`log10_gradient_amplitude`).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.evaluation.distances import summary_stats
from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.inference import eval_mode
from defdistill.temperature import check_temperature


def gradient_amplitude(
    model: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 256
) -> torch.Tensor:
    """Per-sample mean ``|dF_c/dx_i|`` over all classes ``c`` and features ``i``.

    ``F = softmax(logits / temperature)`` is the deployed softmax (``temperature = 1`` for
    a distilled network at test time). The Jacobian is computed class by class (one
    backward pass per class, vectorised over the batch) from the closed-form softmax
    derivative ``dF_c/dz_k = F_c (δ_ck - F_k) / T``, with ``1 - F_c`` evaluated as
    ``sum_{k != c} F_k``: autograd through the softmax rounds it to 0 when ``F_c`` is
    within float32 precision of 1, which would turn tiny gradients into exact zeros.
    Values below the float32 range still underflow to 0 (:func:`log10_gradient_amplitude`
    measures them).

    Args:
        model: classifier returning logits.
        x: ``(N, ...)`` inputs.
        temperature: softmax temperature. Default 1.0.
        batch_size: samples per backward pass. Default 256.

    Returns:
        ``(N,)`` float tensor.
    """
    t = check_temperature(temperature)
    if len(x) == 0:
        return torch.zeros(0, dtype=x.dtype, device=x.device)
    out: list[torch.Tensor] = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].detach().clone().requires_grad_(True)
            z = model(xb)
            k = z.shape[1]
            with torch.no_grad():
                s = F.softmax(z / t, dim=1)
            total = torch.zeros(len(xb), dtype=torch.float64, device=x.device)
            for c in range(k):
                s_c = s[:, c : c + 1]
                cot = -s_c * s
                cot[:, c] = s_c[:, 0] * torch.cat([s[:, :c], s[:, c + 1 :]], dim=1).sum(dim=1)
                (g,) = torch.autograd.grad(z, xb, grad_outputs=cot / t, retain_graph=c < k - 1)
                total += g.flatten(1).abs().sum(dim=1, dtype=torch.float64)
            out.append((total / (k * xb[0].numel())).to(x.dtype))
    return torch.cat(out)


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``dZ/dx``: the Jacobian of the logits, ``(N, K, n_features)`` (one backward per class)."""
    with eval_mode(model):
        xb = x.detach().clone().requires_grad_(True)
        z = model(xb)
        k = z.shape[1]
        rows = []
        for c in range(k):
            (g,) = torch.autograd.grad(z[:, c].sum(), xb, retain_graph=c < k - 1)
            rows.append(g.flatten(1))
    return torch.stack(rows, dim=1)


def log10_gradient_amplitude(
    model: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 64
) -> torch.Tensor:
    """``log10`` of :func:`gradient_amplitude`, exact where float arithmetic underflows.

    With ``l = log_softmax(z / T)`` and ``g_c = dz_c/dx``, the softmax Jacobian is
    ``dF_i/dx = F_i · Σ_j F_j (g_i - g_j) / T``. Factoring out ``exp(l*_i)``, with
    ``l*_i = max_{j≠i} l_j``, every factor stays representable, so the amplitude of a
    saturated softmax (defensive distillation at high T: ``10^-300`` and below, where
    float32 and even float64 give exactly 0) is still measured. Papernot et al. 2016
    (arXiv:1511.04508, Section V) report gradient amplitudes over many orders of
    magnitude; this is how to see them.

    Returns:
        ``(N,)`` float64: ``log10(mean_{i,p} |dF_i/dx_p|)`` (``-inf`` only if exactly 0).
    """
    t = check_temperature(temperature)
    out: list[torch.Tensor] = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        g = logit_jacobian(model, xb).double()  # (B, K, n)
        with eval_mode(model), torch.no_grad():
            logp = F.log_softmax(model(xb).double() / t, dim=1)  # (B, K)
        k, n = g.shape[1], g.shape[2]
        eye = torch.eye(k, dtype=torch.bool, device=x.device)
        others = logp[:, None, :].masked_fill(eye[None], -math.inf)  # (B, i, j), j != i
        top = others.max(dim=2, keepdim=True).values  # l*_i
        weights = (others - top).exp()  # exp(l_j - l*_i), 0 for j == i
        diff = g[:, :, None, :] - g[:, None, :, :]  # (B, i, j, n): g_i - g_j
        inner = (weights[..., None] * diff).sum(dim=2).abs()  # (B, i, n)
        log_abs = logp[:, :, None] + top + inner.log() - math.log(t)  # natural log
        log_mean = torch.logsumexp(log_abs.flatten(1), dim=1) - math.log(k * n)
        out.append(log_mean / math.log(10))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor) -> float:
    """Fraction of ``x`` whose deployed softmax Jacobian is exactly zero in float32.

    The quantity the reproduction's gradient measurements report
    (:func:`gradient_amplitude`), and what an attack differentiating
    the probabilities sees: where it is zero, the attack cannot move.
    """
    amplitude = gradient_amplitude(model, x)
    return float((amplitude == 0).float().mean()) if len(x) else 0.0


def gradient_stats(model: nn.Module, x: torch.Tensor, bins: int = 40, seed: int = 0) -> dict[str, Any]:
    """Amplitude of the deployed softmax's Jacobian (T = 1): log10 histogram and summary.

    ``*_log10`` and the histogram come from :func:`log10_gradient_amplitude`
    (exact far below float range); ``mean``, ``median`` and ``zero_fraction`` are the
    float32 values an attack computing the gradient actually sees. ``zero`` is the count of
    exactly-zero Jacobians with its Wilson interval; ``amplitude_interval`` and
    ``log10_interval`` are the means of the float32 amplitude and of the exact log10
    amplitude with bootstrap intervals over the images (resampled with ``seed``).
    """
    log10 = log10_gradient_amplitude(model, x)
    amplitude = gradient_amplitude(model, x)
    finite = log10[torch.isfinite(log10)]
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        counts = torch.histc(finite, bins=bins, min=lo, max=hi)
        edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    else:
        counts, edges = torch.zeros(bins), torch.linspace(-1.0, 0.0, bins + 1)
    return {
        "samples": len(x),
        **summary_stats(amplitude),
        "zero_fraction": float((amplitude == 0).float().mean()) if len(x) else math.nan,
        "zero": Proportion.from_mask(amplitude == 0).to_dict(),
        "amplitude_interval": MeanEstimate.of(amplitude, seed=seed).to_dict(),
        "log10_interval": MeanEstimate.of(finite, seed=seed).to_dict(),
        "mean_log10": float(finite.mean()) if len(finite) else None,
        "median_log10": float(finite.median()) if len(finite) else None,
        "histogram": {"log10_edges": edges.tolist(), "counts": [int(c) for c in counts],
                      "zeros": int(len(log10) - len(finite))},
    }
