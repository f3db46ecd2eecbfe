"""Data sets as float32 tensors in [0, 1], NCHW, with int64 labels.

* :mod:`.mnist`: MNIST from its IDX files; the full set is embedded in the package.
* :mod:`.cifar10`: CIFAR-10 from the official python batches or their tar.gz.
* :mod:`.safe_pickle`: the restricted unpickler CIFAR-10's batches are read with.
* :mod:`.download`: fetch either data set and verify it before writing.
"""

from defdistill.data.dataset import DATASETS, DataError, Dataset
from defdistill.data.load import load_dataset

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset"]
