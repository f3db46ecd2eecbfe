"""Attacks on any PyTorch classifier returning logits.

Each attack is an object with validated parameters, called as
``attack(model, x, y, target=None) -> AttackResult`` (see :mod:`defdistill.attacks.base`).
"""

from defdistill.attacks.apgd import APGD
from defdistill.attacks.base import Attack, AttackResult
from defdistill.attacks.bpda import bpda
from defdistill.attacks.cw import CarliniWagnerL2
from defdistill.attacks.eot import EOT, NES
from defdistill.attacks.fgsm import FGSM
from defdistill.attacks.jsma import JSMA
from defdistill.attacks.pgd import PGD
from defdistill.attacks.square import Square

__all__ = [
    "APGD", "EOT", "FGSM", "JSMA", "NES", "PGD", "Attack", "AttackResult", "CarliniWagnerL2", "Square",
    "bpda",
]
