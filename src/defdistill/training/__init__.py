"""Training at temperature T and defensive distillation (Papernot et al. 2016, Section IV).

* :mod:`.config`: hyper-parameters, the paper's defaults, a seed per network.
* :mod:`.loop`: the training loop (the deployed model's evaluation is
  :func:`defdistill.inference.evaluate`).
* :mod:`.runs`: build, train and save one network.
* :mod:`.distill`: teacher at T, soft labels, student at T, deployed at 1.
"""

from defdistill.training.config import TrainConfig, paper_config, role_seed
from defdistill.training.loop import TrainingError, train
from defdistill.training.runs import train_model

__all__ = [
    "TrainConfig",
    "TrainingError",
    "paper_config",
    "role_seed",
    "train",
    "train_model",
]
