"""Where to compute and in which number format: ``auto`` falls back to the CPU and to float32."""

import pytest
import torch

from defdistill.devices import cpu_has_native_bf16, machine, resolve_device, resolve_precision

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n"  # no bfloat16 units
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cuda_without_gpu_says_what_to_use_instead():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    message = "device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'"
    with pytest.raises(ValueError, match=message):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_native_bfloat16_is_read_from_the_cpu_flags():
    assert not cpu_has_native_bf16(AVX2_ONLY)
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS)
    assert cpu_has_native_bf16("flags : avx2 amx_bf16\n")
    assert not cpu_has_native_bf16("model name : something without flags\n")


def test_the_machine_record_names_the_cpu_and_its_bfloat16_units():
    xeon = "model name\t: Intel(R) Xeon(R) Platinum 8480+\n" + SAPPHIRE_RAPIDS
    found = machine(xeon)
    assert found["cpu"] == "Intel(R) Xeon(R) Platinum 8480+" and found["cpu_native_bf16"] is True
    assert machine("model name : AMD EPYC\n" + AVX2_ONLY)["cpu_native_bf16"] is False
    assert isinstance(found["cpus"], int) and found["cpus"] >= 1


def test_auto_precision_follows_the_hardware(monkeypatch):
    import defdistill.devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"  # asked for: emulated, slow, but allowed
    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"


def test_unknown_precision_names_the_parameter():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        resolve_precision("fp16", torch.device("cpu"))
