"""Where to compute: ``auto`` falls back to the CPU, ``cuda`` without a GPU is an error."""

import pytest
import torch

from defdistill.training.devices import resolve_device


def test_cuda_without_gpu_says_what_to_use_instead():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    message = "--device cuda requested but no CUDA GPU is available; use auto or cpu"
    with pytest.raises(ValueError, match=message):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
