"""Shared machinery of the attacks: validation, clipping, batching, success bookkeeping.

Every attack is an object holding validated parameters and called as
``attack(model, x, y, target=None) -> AttackResult`` (the Foolbox convention). The base
class :class:`Attack` does everything that is not the algorithm itself:

* validates the inputs (``x`` float in [0, 1] with shape ``(N, ...)``, ``y`` and ``target``
  int64 of shape ``(N,)`` inside ``[0, num_classes)``, ``target != y``);
* runs the model in eval mode and restores its previous ``training`` flag afterwards;
  gradients are taken with ``torch.autograd.grad`` w.r.t. the input only, so the
  parameters and their ``.grad`` are never touched;
* splits huge inputs into chunks of ``batch_size`` samples;
* seeds a local ``torch.Generator`` so the result is deterministic for a given seed
  (and a given ``batch_size``);
* measures success with the model at the end: untargeted ``argmax Z(x_adv) != y``,
  targeted ``argmax Z(x_adv) == target`` (:meth:`Attack.perturb` skips this and returns
  ``x_adv`` only).

A subclass only implements :meth:`Attack._run` on one chunk.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from defdistill.inference import eval_mode
from defdistill.names import Loss, Norm

logger = logging.getLogger(__name__)



@dataclass
class AttackResult:
    """What an attack returns.

    Attributes:
        x_adv: adversarial inputs, same shape and dtype as ``x``, inside [0, 1].
        success: ``(N,)`` bool. Untargeted: ``argmax Z(x_adv) != y``; targeted:
            ``argmax Z(x_adv) == target``; measured with the model (in eval mode) at the end.
        info: per-sample extras reported by the algorithm, each a tensor whose first
            dimension is ``N`` (e.g. ``iterations``, ``features_changed``, ``const``).
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Fraction of successful samples (``nan`` for an empty batch)."""
        n = self.success.numel()
        return float(self.success.float().mean()) if n else float("nan")


# --------------------------------------------------------------------------- validation
def check_nonnegative(name: str, value: float, *, allow_zero: bool = True) -> float:
    """``float(value)`` or ``ValueError`` unless finite and >= 0 (> 0 if not ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_positive_int(name: str, value: int, *, allow_zero: bool = False) -> int:
    """``value`` or ``ValueError`` unless it is an int >= 1 (>= 0 if ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be >= {0 if allow_zero else 1}, got {value}")
    return value


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` or ``ValueError`` unless it is one of ``choices`` (strings or StrEnum members)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _check_labels(name: str, labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of class indices, got {type(labels)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match x, got {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes}), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.long()


def validate_inputs(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a floating tensor ``(N, ...)`` with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"x must be a floating tensor with values in [0, 1], got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, ...) with at least 2 dims, got {tuple(x.shape)}")
    if x.numel() and bool(torch.isnan(x).any()):
        raise ValueError("x contains NaN")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(
            f"x must lie in [0, 1] (got min {float(x.min()):.4g}, max {float(x.max()):.4g}); "
            "put any normalisation inside the model"
        )


# --------------------------------------------------------------------------- model helpers
def input_gradient(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of ``objective.sum()`` w.r.t. ``x`` only (never accumulates parameter grads)."""
    (g,) = torch.autograd.grad(objective.sum(), x)
    return g


def other_max(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``max_{i != label} logits_i`` per row, shape ``(N,)``."""
    mask = F.one_hot(label, logits.shape[1]).bool()
    return logits.masked_fill(mask, float("-inf")).amax(dim=1)


def classification_loss(
    logits: torch.Tensor, label: torch.Tensor, loss: str, temperature: float
) -> torch.Tensor:
    """Per-sample loss on ``label`` that an untargeted attack *ascends*, shape ``(N,)``.

    ``"ce"``: cross-entropy of ``softmax(logits / T)`` (``log_softmax``, never
    ``log(softmax)``). ``"margin"``: ``max_{i != label} z_i - z_label`` on ``z = logits / T``
    (the Carlini & Wagner margin, unclamped). A targeted attack descends the same loss
    evaluated on the target class.
    """
    z = logits / temperature
    if loss == Loss.CE:
        return F.cross_entropy(z, label, reduction="none")
    return other_max(z, label) - z.gather(1, label[:, None])[:, 0]


def attack_objective(
    logits: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    loss: str,
    temperature: float,
) -> torch.Tensor:
    """Per-sample objective to ascend: loss on ``y`` (untargeted) or minus loss on ``target``."""
    if target is None:
        return classification_loss(logits, y, loss, temperature)
    return -classification_loss(logits, target, loss, temperature)


def is_adversarial(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """``argmax != y`` (untargeted) or ``argmax == target`` (targeted), shape ``(N,)``."""
    pred = logits.argmax(dim=1)
    return pred != y if target is None else pred == target


def per_sample_norm(v: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Norm of each sample of ``v`` (``(N, ...)``) over its flattened features, ``(N,)``."""
    return torch.linalg.vector_norm(v.flatten(1), ord=p, dim=1)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x_adv`` moved onto the ``norm`` ball of radius ``eps`` around ``x``, then into [0, 1]."""
    delta = x_adv - x
    if norm == Norm.LINF:
        delta = delta.clamp(-eps, eps)
    else:
        length = per_sample_norm(delta)
        factor = torch.where(length > eps, eps / length.clamp_min(1e-12), 1.0)
        delta = delta * view_per_sample(factor, delta)
    return (x + delta).clamp_(0.0, 1.0)


def view_per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(N,)`` into ``(N, 1, ..., 1)`` to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


# --------------------------------------------------------------------------- base class
def _check_finite(logits: torch.Tensor, offset: int) -> None:
    """``ValueError`` naming the first sample whose logits (on its attacked input) are not finite."""
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        first = offset + int(bad.nonzero()[0, 0])
        raise ValueError(f"model returned NaN or infinite logits on sample {first} ({int(bad.sum())} of "
                         f"{len(logits)} in this batch); an attack on it would be meaningless")  # fmt: skip


def has_input_gradient(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``model``'s output on ``x`` has a gradient w.r.t. ``x``."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = model(xg)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return False
        (g,) = torch.autograd.grad(out.sum(), xg, allow_unused=True)
    return g is not None


class Attack(ABC):
    """Base class: validation, eval mode, batching, seeding and success bookkeeping.

    Args:
        batch_size: maximum number of samples given to the algorithm at once (inputs
            are processed in chunks of this size). ``None`` (default) = all at once.
        seed: seed of the local ``torch.Generator`` handed to the algorithm (used by
            randomised attacks only). Default 0.

    Subclasses set ``requires_target = True`` if they are targeted only,
    ``uses_gradients = False`` if they only query the model (the base then skips its check
    that the model has input gradients), and implement
    :meth:`_run`.
    """

    requires_target: ClassVar[bool] = False
    uses_gradients: ClassVar[bool] = True  # False: the attack only queries the model (Square)

    def __init__(self, *, batch_size: int | None = None, seed: int = 0) -> None:
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.batch_size = batch_size
        self.seed = seed

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    @abstractmethod
    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Attack one validated chunk (model already in eval mode).

        Returns ``x_adv`` (same shape as ``x``; the base clips it to [0, 1]) and a dict of
        per-sample tensors with first dimension ``len(x)``.
        """

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> AttackResult:
        """Run the attack and measure its success with the model.

        Args:
            model: any ``nn.Module`` mapping ``(N, ...)`` inputs to ``(N, K)`` logits.
            x: ``(N, ...)`` float inputs in [0, 1].
            y: ``(N,)`` int64 true labels.
            target: ``(N,)`` int64 target classes (targeted attack), or ``None``.

        Returns:
            :class:`AttackResult` with ``x_adv`` of shape ``x.shape``.

        Raises:
            ValueError: inputs of the wrong type, shape or range; a target equal to the
                label; a missing target for a targeted-only attack.
        """
        x_adv, success, info = self._execute(model, x, y, target, measure_success=True)
        assert success is not None
        return AttackResult(x_adv, success, info)

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Only the adversarial inputs ``x_adv`` (what ART's ``generate`` returns).

        Same arguments, validation and result as :meth:`__call__`, without the final
        forward pass that measures success: for a one-step attack such as FGSM that pass
        is a third of the work. Use it when the caller evaluates ``x_adv`` itself.
        """
        return self._execute(model, x, y, target, measure_success=False)[0]

    def _execute(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        measure_success: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model)}")
        validate_inputs(x)
        n = x.shape[0]
        if self.requires_target and target is None:
            raise ValueError(
                f"{type(self).__name__} is a targeted attack: pass target=(N,) class indices "
                "(see defdistill.evaluation.protocol.all_targets to attack every other class)"
            )
        with eval_mode(model):
            num_classes = self._num_classes(model, x)
            y = _check_labels("y", y, n, num_classes).to(x.device)
            if target is not None:
                target = _check_labels("target", target, n, num_classes).to(x.device)
                if bool((target == y).any()):
                    bad = int((target == y).nonzero()[0, 0])
                    raise ValueError(
                        f"target must differ from y for every sample (sample {bad} has "
                        f"target == y == {int(y[bad])})"
                    )
            if n == 0:
                return x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device), {}
            if self.uses_gradients and not has_input_gradient(model, x[:1]):
                raise ValueError(
                    "the model cannot be differentiated w.r.t. its input (torch.no_grad, .detach() "
                    "or a non-differentiable step inside it); a gradient attack needs gradients: "
                    "use a gradient-free attack such as Square"
                )
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            step = self.batch_size or n
            advs: list[torch.Tensor] = []
            succ: list[torch.Tensor] = []
            infos: list[dict[str, torch.Tensor]] = []
            for start in range(0, n, step):
                sl = slice(start, start + step)
                xc, yc = x[sl].detach(), y[sl]
                tc = None if target is None else target[sl]
                x_adv, info = self._run(model, xc, yc, tc, generator)
                x_adv = x_adv.detach().clamp_(0.0, 1.0).to(x.dtype)
                if x_adv.shape != xc.shape:
                    raise RuntimeError(
                        f"{type(self).__name__} returned shape {tuple(x_adv.shape)}, "
                        f"expected {tuple(xc.shape)}"
                    )
                if measure_success:
                    with torch.no_grad():
                        logits = model(x_adv)
                        _check_finite(logits, start)  # every sample: a NaN output is never "fooled"
                        succ.append(is_adversarial(logits, yc, tc))
                    logger.debug("%s: samples %d-%d, success %.3f", type(self).__name__, start,
                                 start + len(xc), float(succ[-1].float().mean()))  # fmt: skip
                advs.append(x_adv)
                infos.append({k: v.detach() for k, v in info.items()})
        info = {k: torch.cat([d[k] for d in infos]) for k in infos[0]}
        return torch.cat(advs), torch.cat(succ) if measure_success else None, info

    @staticmethod
    def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
        if x.shape[0] == 0:
            return 2**62  # nothing to check labels against; no forward pass on empty input
        try:
            with torch.no_grad():
                out = model(x[:1])
        except RuntimeError as err:  # wrong dtype, shape or device for this model
            detail = " ".join(str(err).split())[:160]
            raise ValueError(
                f"the model cannot take x of shape {tuple(x.shape)} and dtype {x.dtype} ({detail}); "
                "give inputs of the shape, dtype and device the model was built for"
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
            raise ValueError(
                f"model must return logits of shape (N, num_classes); for 1 input it returned {shape}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError("model returned NaN or infinite logits; an attack on it would be meaningless")
        if bool((out >= 0).all() and (out <= 1).all()) and abs(float(out.sum()) - 1) < 1e-3:
            logger.warning("the model's outputs look like probabilities (in [0, 1], summing to 1): "
                           "attacks expect logits; remove the final softmax or the attack works "
                           "on a saturating function (see `defdistill audit`)")  # fmt: skip
        if out.shape[1] < 2:
            raise ValueError(f"model must output >= 2 classes, got {out.shape[1]}")
        return int(out.shape[1])
