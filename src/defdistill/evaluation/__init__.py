"""Measuring robustness, and telling robustness from gradient masking.

* :mod:`.distances`: L0, L2, L∞ of perturbations.
* :mod:`.protocol`: the paper's success rate and ``rho_adv`` (Papernot et al. 2016, Section V).
* :mod:`.gradients`: amplitude of the deployed softmax's Jacobian (Section V-B).
* :mod:`.threats`: threat models, standard budgets, target modes.
* :mod:`.samples`: which test images are attacked.
* :mod:`.scaled_copy`: is one network a copy of another with its logits scaled?
* :mod:`.battery`: each attack at a fixed budget, summarised as JSON.
* :mod:`.checks`: the gradient-masking checks and the one rule that decides.
* :mod:`.audit`: ``defdistill audit``: the battery, the checks and a verdict.
"""

from defdistill.evaluation.distances import l0, l0_fraction, l2, linf
from defdistill.evaluation.protocol import Robustness, SuccessRateReport, paper_success_rate, rho_adv
from defdistill.evaluation.threats import Budgets, Norm, TargetMode, ThreatModel, standard_budgets

__all__ = [
    "Budgets",
    "Norm",
    "Robustness",
    "SuccessRateReport",
    "TargetMode",
    "ThreatModel",
    "l0",
    "l0_fraction",
    "l2",
    "linf",
    "paper_success_rate",
    "rho_adv",
    "standard_budgets",
]
