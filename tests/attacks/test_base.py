"""The contract every attack shares (attacks/base.py): bounds, shapes, validation, no side
effects, determinism."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from attack_helpers import linear, mlp
from synthetic import make_synthetic

from defdistill.attacks import FGSM, JSMA, PGD, Attack, AttackResult, CarliniWagnerL2
from defdistill.models import build_model

FACTORIES: dict[str, Callable[[], Attack]] = {
    "fgsm": lambda: FGSM(eps=0.1),
    "fgsm_margin_T": lambda: FGSM(eps=0.1, loss="margin", temperature=20.0),
    "pgd_linf": lambda: PGD(eps=0.1, steps=5),
    "pgd_l2": lambda: PGD(eps=0.5, norm="l2", steps=5, loss="margin"),
    "jsma_probs": lambda: JSMA(gamma=0.5),
    "jsma_logits_neg": lambda: JSMA(theta=-1.0, gamma=0.5, on="logits"),
    "cw": lambda: CarliniWagnerL2(binary_search_steps=2, max_iterations=20),
}
TARGETED_ONLY = {"jsma_probs", "jsma_logits_neg"}


def data(n: int, num_classes: int, n_features: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, n_features // 4, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    target = (y + 1 + torch.randint(0, num_classes - 1, (n,), generator=g)) % num_classes
    return x, y, target


@pytest.mark.parametrize("num_classes", [3, 100])
@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("targeted", [False, True])
def test_output_contract(name: str, num_classes: int, targeted: bool) -> None:
    if name in TARGETED_ONLY and not targeted:
        pytest.skip("targeted-only attack")
    model = mlp(16, num_classes).eval()
    x, y, target = data(12, num_classes)
    res = FACTORIES[name]()(model, x, y, target if targeted else None)
    assert isinstance(res, AttackResult)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert res.success.shape == (12,) and res.success.dtype == torch.bool
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    expected = pred == target if targeted else pred != y
    assert torch.equal(res.success, expected)
    for key, value in res.info.items():
        assert value.shape[0] == 12, key


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_model_mode_and_parameters_untouched(name: str) -> None:
    model = mlp(16, 3)
    model.train()
    model[3].eval()  # a submodule in a different mode must be restored too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y, target = data(6, 3)
    FACTORIES[name]()(model, x, y, target)
    assert model.training and not model[3].training and model[1].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_attacks_run_the_model_in_eval_mode(name: str) -> None:
    """With dropout active the result would change between two calls."""
    model = mlp(16, 3).train()
    x, y, target = data(6, 3)
    a = FACTORIES[name]()(model, x, y, target)
    b = FACTORIES[name]()(model, x, y, target)
    assert torch.equal(a.x_adv, b.x_adv)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_batch_size_chunks_give_the_same_result(name: str) -> None:
    if name.startswith("pgd"):
        pytest.skip("random start draws depend on the chunking (documented)")
    model = mlp(16, 3).eval()
    x, y, target = data(10, 3)
    whole = FACTORIES[name]()(model, x, y, target)
    attack = FACTORIES[name]()
    attack.batch_size = 3
    chunked = attack(model, x, y, target)
    torch.testing.assert_close(chunked.x_adv, whole.x_adv, atol=1e-5, rtol=0)
    assert torch.equal(chunked.success, whole.success)


def test_same_seed_same_result_and_seed_matters() -> None:
    model = mlp(16, 3).eval()
    x, y, _ = data(8, 3)
    a = PGD(eps=0.3, steps=3, seed=5)(model, x, y)
    b = PGD(eps=0.3, steps=3, seed=5)(model, x, y)
    c = PGD(eps=0.3, steps=3, seed=6)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)
    state = torch.random.get_rng_state()
    PGD(eps=0.3, steps=3)(model, x, y)
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG must not be used"


class CountingModel(torch.nn.Module):
    """Wraps a model and counts the samples that go through its forward pass."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_perturb_returns_the_same_images_without_the_success_pass(name: str) -> None:
    model = CountingModel(mlp(16, 3))
    x, y, target = data(10, 3)
    full = FACTORIES[name]()(model, x, y, target)
    after_call, model.samples = model.samples, 0
    x_adv = FACTORIES[name]().perturb(model, x, y, target)
    assert torch.equal(x_adv, full.x_adv)
    assert model.samples == after_call - 10  # the success check is one forward pass over x_adv
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FACTORIES[name]().perturb(model, x + 1.0, y, target)


def test_empty_batch() -> None:
    model = linear(16, 3)
    x = torch.zeros(0, 1, 4, 4)
    res = FGSM(0.1)(model, x, torch.zeros(0, dtype=torch.long))
    assert res.x_adv.shape == x.shape and res.success.shape == (0,)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_bad_inputs_raise(name: str) -> None:
    model = linear(16, 3)
    attack = FACTORIES[name]()
    x, y, target = data(4, 3)
    for bad in (1.5, -0.25, float("inf")):
        pixels = x.clone()
        pixels[2, 0, 1, 1] = bad
        with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
            attack(model, pixels, y, target)
    with pytest.raises(ValueError, match="x contains NaN"):
        attack(model, x.masked_fill(x > 0.5, float("nan")), y, target)
    with pytest.raises(ValueError, match="floating"):
        attack(model, (x * 255).to(torch.uint8), y, target)
    with pytest.raises(ValueError, match="shape"):
        attack(model, x, y[:3], target)
    with pytest.raises(ValueError, match="shape"):
        attack(model, x, y, target[:3])
    with pytest.raises(ValueError, match="integer"):
        attack(model, x, y.float(), target)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 3\)"):
        attack(model, x, torch.tensor([0, 1, 3, 0]), target)
    with pytest.raises(ValueError, match="class indices"):
        attack(model, x, y, target + 3)
    with pytest.raises(ValueError, match="target must differ from y"):
        attack(model, x, y, y.clone())
    with pytest.raises(ValueError, match="logits"):
        attack(torch.nn.Identity(), x, y, target)
    with pytest.raises(ValueError, match="Module"):
        attack(lambda t: t, x, y, target)


def test_non_finite_logits_are_rejected() -> None:
    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 3), float("nan"))

    with pytest.raises(ValueError, match="NaN or infinite logits"):
        FGSM(eps=0.1)(NaNModel(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_targeted_only_attack_requires_target() -> None:
    x, y, _ = data(4, 3)
    with pytest.raises(ValueError, match="target"):
        JSMA()(linear(16, 3), x, y)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FGSM(eps=-0.1),
        lambda: FGSM(eps=float("nan")),
        lambda: FGSM(eps=0.1, loss="l2"),
        lambda: FGSM(eps=0.1, temperature=0.0),
        lambda: FGSM(eps=0.1, batch_size=0),
        lambda: PGD(eps=0.1, norm="l1"),
        lambda: PGD(eps=0.1, steps=0),
        lambda: PGD(eps=0.1, steps=2.5),
        lambda: PGD(eps=0.1, step_size=-1.0),
        lambda: PGD(eps=0.1, random_start="yes"),
        lambda: PGD(eps=0.1, seed=1.5),
        lambda: PGD(eps=0.1, temperature=-2.0),
        lambda: JSMA(theta=0.5),
        lambda: JSMA(gamma=0.0),
        lambda: JSMA(gamma=-0.1),
        lambda: JSMA(gamma=1.5),
        lambda: JSMA(gamma=float("nan")),
        lambda: JSMA(on="softmax"),
        lambda: JSMA(temperature=float("inf")),
        lambda: JSMA(pair_chunk=0),
        lambda: CarliniWagnerL2(confidence=-1.0),
        lambda: CarliniWagnerL2(initial_const=0.0),
        lambda: CarliniWagnerL2(binary_search_steps=0),
        lambda: CarliniWagnerL2(max_iterations=0),
        lambda: CarliniWagnerL2(learning_rate=0.0),
        lambda: CarliniWagnerL2(abort_early=1),
    ],
)
def test_bad_parameters_raise(make: Callable[[], Attack]) -> None:
    with pytest.raises(ValueError):
        make()


DETERMINISM = {
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


@pytest.mark.parametrize("name", sorted(DETERMINISM))
def test_every_attack_is_bit_identical_twice(conv_model_and_data, name):
    """Same seed, same everything: bit-identical results twice on CPU (a conv network)."""
    model, x, y = conv_model_and_data
    target = (y + 1) % 3
    first = DETERMINISM[name]()(model, x, y, target)
    second = DETERMINISM[name]()(model, x.clone(), y.clone(), target.clone())
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(first.success, second.success)
    assert first.info.keys() == second.info.keys()
    for key in first.info:
        assert torch.equal(first.info[key], second.info[key]), key


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("case", ["float16-inputs", "float64-model", "flat-inputs"])
def test_inputs_the_model_cannot_take_are_a_value_error(name: str, case: str) -> None:
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10).eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    if case == "float16-inputs":
        x = x.half()
    elif case == "float64-model":
        model = model.double()
    else:
        x = x.flatten(1)
    with pytest.raises(ValueError, match=r"the model cannot take x of shape .* and dtype"):
        FACTORIES[name]()(model, x, y, (y + 1) % 10)


def test_a_model_returning_probabilities_is_warned_about(caplog) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(linear(16, 3), torch.nn.Softmax(dim=1)).eval()
    x, y, _ = data(4, 3)
    with caplog.at_level("WARNING", logger="defdistill.attacks.base"):
        FGSM(eps=0.1)(model, x, y)
    assert "look like probabilities" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="defdistill.attacks.base"):
        FGSM(eps=0.1)(linear(16, 3), x, y)
    assert "probabilities" not in caplog.text
