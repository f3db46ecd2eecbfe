"""defdistill: defensive distillation (Papernot et al. 2016, arXiv:1511.04508) in PyTorch,
with the attacks and checks that show whether it is robust."""

from defdistill.checkpoint import CheckpointError, load_model, save_model
from defdistill.data import DataError, Dataset, load_dataset
from defdistill.models import build_model, register_model
from defdistill.temperature import softmax_at, temperature_loss

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataError",
    "Dataset",
    "__version__",
    "build_model",
    "load_dataset",
    "load_model",
    "register_model",
    "save_model",
    "softmax_at",
    "temperature_loss",
]
