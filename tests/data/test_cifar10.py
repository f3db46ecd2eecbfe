"""Numerics and determinism: property tests (hypothesis) and extreme values.

* The softmax and the loss at temperature T, and their gradients, are finite for logits
  up to |z| = 1e4 and T from 0.01 to 1000; the softmax sums to 1, does not change when a
  constant is added to the logits; the loss is >= 0 for one-hot targets and >= the
  entropy of soft targets (Gibbs), and its gradient is (softmax - p) / T.
* The IDX reader returns exactly the array that was written, for every type and shape;
  random bytes give an array or a ``DataError``, never anything else.
* The CIFAR-10 reader, fed mutated or truncated batches, returns a batch or raises
  ``DataError``: no other exception, no crash, no huge allocation.
* Same seed, same everything: every attack gives bit-identical results twice on CPU.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from synthetic import make_synthetic

from defdistill.attacks import FGSM, JSMA, PGD, CarliniWagnerL2
from defdistill.data import DataError
from defdistill.data.cifar10 import parse_cifar_batch
from defdistill.data.mnist import parse_idx
from defdistill.models import build_model
from defdistill.temperature import log_softmax_at, softmax_at, temperature_loss

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEMPERATURES = st.floats(min_value=0.01, max_value=1000.0)
LOGIT = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def logits_batches(draw, dtype=torch.float32):
    n = draw(st.integers(1, 4))
    k = draw(st.integers(2, 12))
    values = draw(st.lists(LOGIT, min_size=n * k, max_size=n * k))
    return torch.tensor(values, dtype=dtype).view(n, k)


# --------------------------------------------------------------------------- softmax at T


@FAST
@given(logits_batches(), TEMPERATURES)
def test_softmax_is_a_finite_distribution(z, t):
    p = softmax_at(z, t)
    assert torch.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    assert torch.allclose(p.sum(-1), torch.ones(len(z)), atol=1e-5)
    # the largest logit has the largest probability (ties are possible after rounding)
    assert torch.equal(p.gather(1, z.argmax(-1, keepdim=True)), p.max(-1, keepdim=True).values)


@FAST
@given(logits_batches(torch.float64), TEMPERATURES, st.floats(-1e4, 1e4))
def test_softmax_is_invariant_to_a_constant_shift(z, t, c):
    assert torch.allclose(softmax_at(z + c, t), softmax_at(z, t), atol=1e-7, rtol=1e-6)
    assert torch.allclose(log_softmax_at(z + c, t).exp(), log_softmax_at(z, t).exp(), atol=1e-7)


@FAST
@given(logits_batches(), TEMPERATURES, st.data())
def test_loss_with_one_hot_targets_is_finite_and_nonnegative(z, t, data):
    y = torch.tensor(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=len(z), max_size=len(z))))
    loss = temperature_loss(z, y, t)
    assert torch.isfinite(loss) and loss.item() >= 0.0
    one_hot = torch.nn.functional.one_hot(y, z.shape[1]).float()
    assert torch.allclose(temperature_loss(z, one_hot, t), loss, rtol=1e-6, atol=1e-6)


@FAST
@given(logits_batches(torch.float64), TEMPERATURES, st.data())
def test_soft_loss_is_at_least_the_entropy_and_its_gradient_is_exact(z, t, data):
    raw = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0.0, 1.0)))
    p = torch.from_numpy(raw) + 1e-3
    p = p / p.sum(-1, keepdim=True)
    z = z.clone().requires_grad_(True)
    loss = temperature_loss(z, p, t)
    entropy = -(p * p.log()).sum(-1).mean()
    assert loss.item() >= entropy.item() - 1e-9 * max(1.0, abs(loss.item()))
    (grad,) = torch.autograd.grad(loss, z)
    expected = (softmax_at(z.detach(), t) - p) / t / len(z)
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t", [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e2, 1e4])
def test_gradients_are_finite_for_extreme_logits_and_temperatures(t, scale):
    z = (torch.tensor([[1.0, -1.0, 0.0, 0.5], [-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, -1.0, 0.0]]) * scale)
    z.requires_grad_(True)
    y = torch.tensor([1, 0, 3])  # including the least likely class
    soft = softmax_at(z.detach() * 0.5, 3.0)
    for target in (y, soft):
        (g,) = torch.autograd.grad(temperature_loss(z, target, t), z)
        assert torch.isfinite(g).all(), (t, scale, target)
        assert g.abs().max() <= 2.0 / t  # |softmax - p| <= 1 per entry, over a batch mean
    (g,) = torch.autograd.grad((softmax_at(z, t) * torch.arange(4.0)).sum(), z)
    assert torch.isfinite(g).all()
    (g,) = torch.autograd.grad(log_softmax_at(z, t)[:, 0].sum(), z)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("t", [0.01, 1.0, 1000.0])
def test_input_gradients_of_a_network_with_huge_logits_are_finite(t):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10).eval()
    with torch.no_grad():
        model.head.weight.mul_(1e3)  # logits of order 1e3..1e4, as after distillation at T=100
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    z = model(x)
    assert z.abs().max() > 1e3
    (g,) = torch.autograd.grad(temperature_loss(z, torch.tensor([0, 1, 2, 3]), t), x)
    assert torch.isfinite(g).all()


# --------------------------------------------------------------------------- IDX round trip

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_arrays(draw):
    code = draw(st.sampled_from(sorted(IDX_TYPES)))
    dtype = np.dtype(IDX_TYPES[code])
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6))
    array = draw(hnp.arrays(dtype, shape))
    return code, array


@FAST
@given(idx_arrays())
def test_idx_round_trip(item):
    code, array = item
    blob = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    parsed = parse_idx(blob + array.tobytes(), "f")
    assert parsed.shape == array.shape and parsed.dtype == array.dtype
    assert parsed.tobytes() == array.tobytes()  # bit-identical (NaN payloads included)


@FAST
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=30)))
def test_idx_round_trip_uint8(array):
    blob = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    np.testing.assert_array_equal(parse_idx(blob + array.tobytes(), "f"), array)


@FAST
@given(st.binary(max_size=64), st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x0d\x03"]))
def test_idx_random_bytes_give_an_array_or_a_data_error(tail, head):
    blob = head + tail
    try:
        array = parse_idx(blob, "f")
    except DataError:
        return
    assert array.nbytes == len(blob) - 4 - 4 * array.ndim  # the header accounts for every byte


# --------------------------------------------------------------------------- CIFAR fuzzing


def _batch() -> dict:
    rng = np.random.default_rng(0)
    return {b"labels": [1, 2, 3], b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
            b"batch_label": b"x"}  # fmt: skip


BATCHES = [pickle.dumps(_batch(), protocol=p) for p in (2, 3, 4, 5)]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(BATCHES), st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(1, 9500)))  # fmt: skip
def test_mutated_cifar_batches_give_a_batch_or_a_data_error(blob, edits, keep):
    """Edits mostly in the first 400 bytes (the structure), optionally truncated."""
    mutated = bytearray(blob[:keep] if keep else blob)
    for pos, value in edits:
        mutated[pos % len(mutated)] = value
    try:
        images, labels = parse_cifar_batch(bytes(mutated), "b")
    except DataError:
        return
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == np.int64 and len(labels) == len(images)


@pytest.mark.parametrize("blob", BATCHES[:3], ids=["protocol2", "protocol3", "protocol4"])
def test_unmodified_batches_load(blob):
    images, labels = parse_cifar_batch(blob, "b")
    assert np.array_equal(images.reshape(3, -1), _batch()[b"data"]) and labels.tolist() == [1, 2, 3]


# --------------------------------------------------------------------------- determinism

ATTACKS = {
    "fgsm": lambda: FGSM(eps=0.1),
    "pgd_linf_random_start": lambda: PGD(eps=0.2, steps=5, seed=3),
    "pgd_l2": lambda: PGD(eps=2.0, norm="l2", steps=5, seed=3),
    "jsma_probs": lambda: JSMA(gamma=0.05),
    "jsma_logits": lambda: JSMA(gamma=0.05, on="logits"),
    "cw": lambda: CarliniWagnerL2(binary_search_steps=2, max_iterations=20),
}


@pytest.fixture(scope="module")
def conv_model_and_data():
    ds = make_synthetic(n_train=8, n_test=6, num_classes=3, seed=4)
    torch.manual_seed(0)
    return build_model("mnist_cnn", 1, 28, 3).eval(), ds.x_test, ds.y_test


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_bit_identical_twice(conv_model_and_data, name):
    model, x, y = conv_model_and_data
    target = (y + 1) % 3
    first = ATTACKS[name]()(model, x, y, target)
    second = ATTACKS[name]()(model, x.clone(), y.clone(), target.clone())
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(first.success, second.success)
    assert first.info.keys() == second.info.keys()
    for key in first.info:
        assert torch.equal(first.info[key], second.info[key]), key
