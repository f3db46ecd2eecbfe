"""The networks of Papernot et al. 2016 (arXiv:1511.04508, Table I), returning logits.

Both architectures follow the paper's Table I: two blocks of two 3x3 convolutions
followed by 2x2 max-pooling, then two fully connected layers and a linear output
layer that returns the logits ``Z(x)``. Softmax, at whatever temperature, is never
part of the model: temperature is an explicit argument of losses and metrics.

New architectures are added with :func:`register_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a model factory ``f(in_channels, image_size, num_classes) -> nn.Module``."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def paper_architecture(in_channels: int) -> str:
    """The paper's network for this kind of image: MNIST's for greyscale, CIFAR-10's for colour."""
    return "mnist_cnn" if in_channels == 1 else "cifar10_cnn"


def build_model(name: str, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Build a registered architecture for inputs ``(N, in_channels, image_size, image_size)``.

    Raises:
        ValueError: unknown name or impossible shape.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {available_models()}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return _REGISTRY[name](in_channels=in_channels, image_size=image_size, num_classes=num_classes)


class PaperCNN(nn.Module):
    """Conv(c1) Conv(c1) Pool Conv(c2) Conv(c2) Pool FC(h) FC(h) FC(classes), ReLU.

    Dropout (p=0.5) is applied after each hidden fully connected layer, as in the
    paper's training setup. ``forward`` returns logits of shape ``(N, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        conv: tuple[int, int],
        hidden: int,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        c1, c2 = conv
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3),
            nn.ReLU(),
            nn.Conv2d(c1, c1, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3),
            nn.ReLU(),
            nn.Conv2d(c2, c2, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for this network (min 14)")
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming-normal, fan-in) initialisation for the ReLU layers, zero biases.

        PyTorch's default (uniform, gain sqrt(1/3)) leaves this 7-layer ReLU net on a
        long loss plateau with the paper's SGD settings; He et al. (arXiv:1502.01852)
        initialisation keeps the signal's scale through the ReLUs and trains at once.
        The output layer uses the linear gain.
        """
        layers = [m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        if layers[0].weight.is_meta:  # built for its shapes only (checkpoint._check_shapes): no values
            return  # (and initialising on "meta" would import torch's compiler: 1.4 s at start)
        for layer in layers:
            last = layer is layers[-1]
            nn.init.kaiming_normal_(layer.weight, nonlinearity="linear" if last else "relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    @property
    def head(self) -> nn.Linear:
        """The output layer producing the logits."""
        return cast(nn.Linear, self.classifier[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("mnist_cnn")
def mnist_cnn(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> PaperCNN:
    """The paper's MNIST network: 32-32-pool-64-64-pool-200-200-classes."""
    return PaperCNN(in_channels, image_size, num_classes, conv=(32, 64), hidden=200)


@register_model("cifar10_cnn")
def cifar10_cnn(in_channels: int = 3, image_size: int = 32, num_classes: int = 10) -> PaperCNN:
    """The paper's CIFAR-10 network: 64-64-pool-128-128-pool-256-256-classes."""
    return PaperCNN(in_channels, image_size, num_classes, conv=(64, 128), hidden=256)


def output_layer(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of a model: the layer that produces the logits."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear output layer")
    return last
