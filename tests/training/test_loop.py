"""The training loop: it learns, is seeded, trains at temperature T, and refuses a stalled run."""

import pytest
import torch

from defdistill.inference import evaluate
from defdistill.models import build_model, output_layer
from defdistill.training.config import TrainConfig
from defdistill.training.loop import TrainingError, train


def fit(ds, **config):
    torch.manual_seed(config.get("seed", 0))
    model = build_model("mnist_cnn", 1, 28, ds.num_classes)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 32, **config})
    return train(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, cfg, progress=False)


def test_learns_the_synthetic_task(synthetic):
    result = fit(synthetic)
    assert result.test_accuracy > 0.95
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.heavy
def test_same_seed_gives_identical_weights(synthetic):
    a = fit(synthetic, epochs=1, seed=3).model.state_dict()
    b = fit(synthetic, epochs=1, seed=3).model.state_dict()
    c = fit(synthetic, epochs=1, seed=4).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_head_scaling_makes_training_at_t_follow_training_at_1(synthetic):
    """With head scaling, z/T at temperature T tracks z at T = 1 (same seed, same steps)."""
    cfg = {"epochs": 1, "lr": 0.01, "head_scaling": True}
    at_1 = fit(synthetic, temperature=1.0, **cfg).model
    at_50 = fit(synthetic, temperature=50.0, **cfg).model
    x = synthetic.x_test[:64]
    z1, z50 = at_1(x), at_50(x)
    assert torch.allclose(z50 / 50.0, z1, atol=1e-3 * z1.abs().max().item())
    assert output_layer(at_50).weight.abs().mean() > 20 * output_layer(at_1).weight.abs().mean()


def test_high_temperature_without_head_scaling_can_stall_and_is_refused(synthetic):
    """Plain training (the default) at T = 1000 with a tiny budget stays at chance."""
    assert not TrainConfig().head_scaling
    with pytest.raises(TrainingError, match="near chance") as refused:
        fit(synthetic, temperature=1000.0, epochs=1, lr=0.01, momentum=0.0)
    assert "allow_untrained=True" in str(refused.value) and "--" not in str(refused.value)  # a Python name
    result = fit(synthetic, temperature=1000.0, head_scaling=True, epochs=1, lr=0.01)
    assert result.test_accuracy > 0.9


def test_soft_targets_and_saturation_of_deployed_model(synthetic):
    soft = torch.nn.functional.one_hot(synthetic.y_train, 3).float() * 0.8 + 0.2 / 3
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 3)
    cfg = TrainConfig(epochs=2, batch_size=32, temperature=20.0)
    result = train(model, synthetic.x_train, soft, synthetic.x_test, synthetic.y_test, cfg,
                   progress=False)
    assert result.test_accuracy > 0.95
    # trained at T = 20, deployed at T = 1: the softmax is far more confident
    deployed = evaluate(result.model, synthetic.x_test, synthetic.y_test, temperature=1.0)
    at_t = evaluate(result.model, synthetic.x_test, synthetic.y_test, temperature=20.0)
    assert deployed["mean_max_probability"] > 0.999 > at_t["mean_max_probability"]


@pytest.mark.heavy
def test_bf16_learns_and_leaves_a_float32_contiguous_model(synthetic, tmp_path):
    from defdistill.checkpoint import load_model, save_model

    plain = fit(synthetic, epochs=1, seed=2, precision="fp32")
    amp = fit(synthetic, epochs=1, seed=2, precision="bf16")
    assert (plain.precision, amp.precision) == ("fp32", "bf16")
    assert amp.test_accuracy > 0.95
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in amp.model.parameters())
    # bfloat16 forward passes: not the float32 trajectory, but the same classifier
    assert not torch.equal(output_layer(plain.model).weight, output_layer(amp.model).weight)
    with torch.no_grad():
        agree = plain.model(synthetic.x_test).argmax(1) == amp.model(synthetic.x_test).argmax(1)
    assert float(agree.float().mean()) > 0.95
    save_model(tmp_path / "m", amp.model,
               {"architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 3})
    loaded, _ = load_model(tmp_path / "m")
    x = synthetic.x_test[:16]
    with torch.no_grad():
        assert torch.equal(loaded(x), amp.model(x))


def test_float32_on_a_cpu_trains_channels_last_with_float32_arithmetic(synthetic, monkeypatch):
    """Channels-last changes the order of a convolution's sums, not their precision: after one
    SGD step from the same weights on the same batch, both layouts agree to float32 rounding."""
    import defdistill.training.loop as loop

    def one_step(layout: torch.memory_format) -> tuple[torch.nn.Module, str]:
        monkeypatch.setattr(loop, "training_layout", lambda precision, dev: layout)
        torch.manual_seed(5)
        model = build_model("mnist_cnn", 1, 28, synthetic.num_classes)
        cfg = TrainConfig(epochs=1, batch_size=len(synthetic.x_train), seed=5)
        result = train(model, synthetic.x_train, synthetic.y_train, synthetic.x_test, synthetic.y_test, cfg,
                       progress=False, allow_untrained=True)  # one step: not yet learned  # fmt: skip
        return result.model, result.memory_format

    fast, fast_layout = one_step(torch.channels_last)
    plain, plain_layout = one_step(torch.contiguous_format)
    assert (fast_layout, plain_layout) == ("channels_last", "contiguous")
    assert all(p.is_contiguous() for p in fast.parameters())  # handed back in the standard layout
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
    # and the default on a CPU is channels-last, in float32, recorded
    monkeypatch.undo()
    assert fit(synthetic, epochs=1, seed=5).memory_format == "channels_last"


@pytest.mark.heavy
def test_auto_precision_is_float32_without_native_bfloat16(synthetic, monkeypatch):
    import defdistill.devices

    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    auto = fit(synthetic, epochs=1, seed=2, precision="auto")
    plain = fit(synthetic, epochs=1, seed=2, precision="fp32")
    assert auto.precision == "fp32"
    pairs = zip(auto.model.parameters(), plain.model.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    monkeypatch.setattr(defdistill.devices, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert fit(synthetic, epochs=1, seed=2, precision="auto").precision == "bf16"


def test_every_epoch_records_held_out_accuracy_and_the_entropy_of_softmax_at_t(synthetic):
    """The convergence record of the last epoch is the trained model's own: entropy of
    softmax(Z / T) on the first training images, accuracy on the first test images."""
    t = 5.0
    result = fit(synthetic, temperature=t)
    assert [r["epoch"] for r in result.history] == [1, 2]
    model = result.model.eval()
    with torch.no_grad():
        p = torch.softmax(model(synthetic.x_train[:1000]).double() / t, dim=1)
        accuracy = (model(synthetic.x_test[:1000]).argmax(1) == synthetic.y_test[:1000]).double().mean()
    by_hand = float(-(p * p.log()).sum(1).mean())
    last = result.history[-1]
    assert last["entropy_at_t"] == pytest.approx(by_hand, rel=1e-3)  # float32 softmax vs float64
    assert last["heldout_accuracy"] == pytest.approx(float(accuracy))
    assert 0.0 < last["entropy_at_t"] < torch.log(torch.tensor(float(synthetic.num_classes)))


def test_the_convergence_record_draws_no_random_numbers_and_restores_train_mode(synthetic):
    """Dropout draws from torch's generator in train mode: the record runs in eval mode, so
    training with it follows the same trajectory as before it existed."""
    from defdistill.training.loop import convergence_record

    model = build_model("mnist_cnn", 1, 28, synthetic.num_classes).train()
    state = torch.get_rng_state()
    ds = synthetic
    convergence_record(model, ds.x_train, ds.x_test, ds.y_test, 20.0, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
