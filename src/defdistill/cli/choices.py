"""The names the parsers offer as choices, without importing torch.

``defdistill --help`` (and any parse) must not pay for importing torch, but the modules
that define these names import it at import time. The data sets come from the torch-free
:mod:`defdistill.data.names`; every other tuple is a copy of the original named beside it,
in the same order. tests/cli/test_startup.py checks that
they agree, so a name added there (an architecture, a norm) fails that test until it is
added here too.
"""

from __future__ import annotations

from defdistill.data.names import DATASETS

__all__ = ["ADVERSARIAL_METHODS", "ARCHITECTURES", "DATASETS", "EXECUTORS", "META", "NORMS", "PRECISIONS",
           "TARGET_MODES"]

ARCHITECTURES = ("cifar10_cnn", "mnist_cnn")  # defdistill.models.available_models() (built-in)
ADVERSARIAL_METHODS = ("pgd", "fgsm-rs")  # defdistill.training.config.ADVERSARIAL_METHODS
TARGET_MODES = ("all", "next", "random")  # defdistill.evaluation.threats.TargetMode values
NORMS = ("linf", "l2")  # defdistill.attacks.base.NORMS
EXECUTORS = ("local", "ray")  # defdistill.experiments.executors.EXECUTORS
PRECISIONS = ("fp32", "bf16", "auto")  # defdistill.devices.PRECISIONS
META = "meta.json"  # defdistill.checkpoint.META: the file that makes a directory a model
