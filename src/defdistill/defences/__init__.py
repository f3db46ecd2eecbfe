"""Defences the field proposed and later broke, as small ``nn.Module`` wrappers.

Each takes inputs in [0, 1] ``(N, C, H, W)`` and returns logits, so any attack or the
audit can be pointed at it like at any other model. They exist to test the audit on
models that mask gradients in the ways Athalye, Carlini & Wagner 2018 (arXiv:1802.00420)
and Tramèr et al. 2020 (arXiv:2002.08347) describe:

* shattered gradients: :class:`BitDepthReduction` (Xu et al. 2018, arXiv:1704.01155),
  :class:`ThermometerEncoding` (Buckman et al. 2018);
* stochastic gradients: :class:`RandomResizePad` (Xie et al. 2018, arXiv:1711.01991),
  :class:`GaussianNoise`;
* discontinuous activations: :class:`KWinnersTakeAll` (Xiao et al. 2020, arXiv:1905.10510).

A preprocessing defence is a :class:`Preprocessed` model whose preprocessing layer is the
submodule named ``"preprocess"`` (the name a structure-aware attack such as BPDA is given).
"""

from defdistill.defences.activations import KWinnersTakeAll, kwta_network
from defdistill.defences.preprocess import (
    PREPROCESS,
    BitDepthReduction,
    GaussianNoise,
    Preprocessed,
    RandomResizePad,
    ThermometerEncoding,
)

__all__ = [
    "PREPROCESS",
    "BitDepthReduction",
    "GaussianNoise",
    "KWinnersTakeAll",
    "Preprocessed",
    "RandomResizePad",
    "ThermometerEncoding",
    "kwta_network",
]
