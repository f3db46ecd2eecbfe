"""Attacks on any PyTorch classifier returning logits.

Each attack is an object with validated parameters, called as
``attack(model, x, y, target=None) -> AttackResult`` (see :mod:`defdistill.attacks.base`).
"""

from defdistill.attacks.base import Attack, AttackResult
from defdistill.attacks.cw import CarliniWagnerL2
from defdistill.attacks.fgsm import FGSM
from defdistill.attacks.jsma import JSMA
from defdistill.attacks.pgd import PGD

__all__ = ["FGSM", "JSMA", "PGD", "Attack", "AttackResult", "CarliniWagnerL2"]
