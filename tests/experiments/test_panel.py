"""The audit panel's bookkeeping: acceptance per member and the report page."""

import pytest

from defdistill.experiments.panel import acceptance, report_markdown

ENV = {"cpu": "AMD EPYC 7B13", "cpus": 2, "cpu_native_bf16": False, "gpu": None, "threads": 1,
       "torch": "2.13.0"}  # what environment() records


def _p(r):
    return {"k": round(100 * r), "n": 100, "rate": r, "low": max(0, r - 0.05), "high": min(1, r + 0.05)}


def _row(name, masking, verdict_masking, blind, aware):
    return {"name": name, "title": name, "literature_masking": masking, "literature": "–",
            "trained_seconds": 0.0, "clean_accuracy": _p(0.99),
            "verdict": {"masking": verdict_masking, "text": ""}, "verdict_agrees": masking == verdict_masking,
            "checks_fired": ["zero_gradients"] if verdict_masking else [], "blind_robust_accuracy": _p(blind),
            "structure_aware": {"attack": "BPDA", "robust_accuracy": _p(aware)},
            "gap_pp": 100 * (blind - aware)}  # fmt: skip


def test_acceptance_allows_5_pp_on_broken_and_3_pp_on_robust_members():
    expected = {"verdict": True, "gap_limit_pp": 5.0, "gap_ok": True}
    assert acceptance(_row("a", True, True, 0.04, 0.0)) == expected
    assert not acceptance(_row("b", True, True, 0.06, 0.0))["gap_ok"]
    assert not acceptance(_row("c", False, False, 0.94, 0.90))["gap_ok"]
    assert acceptance(_row("d", False, False, 0.80, 0.90))["gap_ok"]  # below the reference is allowed
    assert not acceptance(_row("e", False, True, 0.9, 0.9))["verdict"]


def test_the_report_names_each_miss_and_the_cpu():
    rows = [_row("ok", True, True, 0.0, 0.0), _row("over", True, True, 0.5, 0.0)]
    for r in rows:
        r["acceptance"] = acceptance(r)
    page = report_markdown({"config": {"samples": 100, "seed": 0, "apgd_steps": 50, "square_queries": 2000,
                                       "cw_iterations": 100, "cw_search_steps": 3, "jsma_samples": 5},
                            "environment": ENV, "members": rows, "seconds": 600.0})  # fmt: skip
    assert "on 2 of 2 members" in page and "on 1 of 2." in page
    assert "**over** misses: verdict ok, gap +50 pp (limit 5)" in page
    assert "Wall time 10.0 min on AMD EPYC 7B13, 2 logical CPUs" in page
    assert "50 % [45, 55]" in page


def test_the_report_names_the_detected_machine():
    """A panel records :func:`~defdistill.devices.machine`; the page names the CPU, its logical
    CPUs, bfloat16 support, the GPU when there is one, and the torch threads."""
    row = _row("ok", True, True, 0.0, 0.0)
    row["acceptance"] = acceptance(row)
    page = report_markdown({"config": {"samples": 100, "seed": 0, "apgd_steps": 50, "square_queries": 2000,
                                       "cw_iterations": 100, "cw_search_steps": 3, "jsma_samples": 5},
                            "environment": ENV, "members": [row], "seconds": 60.0})  # fmt: skip
    assert ("Wall time 1.0 min on AMD EPYC 7B13, 2 logical CPUs (no native bf16), 1 torch thread(s), "
            "torch 2.13.0, one member") in page
    page = report_markdown({"config": {"samples": 100, "seed": 0, "apgd_steps": 50, "square_queries": 2000,
                                       "cw_iterations": 100, "cw_search_steps": 3, "jsma_samples": 5},
                            "environment": {**ENV, "cpu_native_bf16": True, "gpu": "NVIDIA H100"},
                            "members": [row], "seconds": 60.0})  # fmt: skip
    assert "2 logical CPUs (native bf16), GPU NVIDIA H100, 1 torch" in page


def test_the_report_names_how_each_member_was_trained():
    row = {**_row("adv-trades", False, False, 0.9, 0.9), "trained_seconds": 12.0,
           "training": "TRADES, 4 epochs"}
    row["acceptance"] = acceptance(row)
    page = report_markdown({"config": {"samples": 100, "seed": 0, "apgd_steps": 50, "square_queries": 2000,
                                       "cw_iterations": 100, "cw_search_steps": 3, "jsma_samples": 5},
                            "environment": ENV, "members": [row], "seconds": 60.0})  # fmt: skip
    assert "trained beforehand (cached): adv-trades (TRADES, 4 epochs) 12 s" in page


def test_the_trades_member_is_trained_with_its_recipe_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """TRADES (Zhang et al. 2019) on the robust side of the panel: trained with
    :data:`TRADES_CONFIG` (here cut to one epoch on a few synthetic images), cached, reloaded."""
    import torch
    from synthetic import make_synthetic

    from defdistill.experiments import panel_members

    ds = make_synthetic(n_train=64, n_test=32, seed=2)
    used = []
    real_train = panel_members.train

    def spy(model, *args, **kwargs):
        used.append(args[4])
        return real_train(model, *args, **{**kwargs, "allow_untrained": True})

    monkeypatch.setattr(panel_members, "train", spy)
    monkeypatch.setitem(panel_members.TRADES_CONFIG, "epochs", 1)
    model, seconds = panel_members.trades_model(ds, tmp_path, seed=0)
    recipe = [(c.adversarial, c.trades_beta, c.adversarial_eps, c.adversarial_steps, c.optimizer)
              for c in used]  # fmt: skip
    assert recipe == [("trades", 6.0, 0.3, 10, "adam")]
    assert (tmp_path / "trades.safetensors").is_file() and seconds > 0
    again, cached_seconds = panel_members.trades_model(ds, tmp_path, seed=0)
    assert len(used) == 1 and cached_seconds == pytest.approx(seconds, abs=0.1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                  strict=True))  # fmt: skip
    member = panel_members.members(ds, tmp_path, ["adv-trades"])[0]
    assert (member.kind, member.masking, member.training) == ("robust", False, panel_members.TRADES_TRAINING)
    assert "96.07 %" in member.literature and "arXiv:1901.08573" in member.title


def test_the_reference_on_a_robust_member_is_autoattacks_set_with_square():
    """On the robust side the structure-aware reference is AutoAttack's standard set less FAB
    (APGD-CE, APGD-T, Square; Croce & Hein 2020) beside APGD-DLR and PGD margin: every example
    stays in the ε-ball and [0, 1], and together they fool what a linear model loses at ε."""
    import torch
    from torch import nn

    from defdistill.experiments.panel import structure_aware
    from defdistill.experiments.panel_members import Member
    from defdistill.inference import correct_mask

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 10)).eval()
    x = torch.rand(12, 1, 6, 6)
    y = model(x).argmax(1)
    member = Member("r", "robust toy", model, "robust", masking=False, literature="–")
    advs, what, random_model = structure_aware(member, x, y, eps=0.1, steps=5, seed=0, square_queries=30)
    assert set(advs) == {"apgd-ce", "apgd-t", "square", "apgd-dlr", "pgd-margin"}
    assert "Square (30 queries)" in what and not random_model
    fooled = torch.zeros(len(x), dtype=torch.bool)
    for name, x_adv in advs.items():
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
        fooled |= ~correct_mask(model, x_adv, y).cpu()
    assert fooled.sum() >= len(x) // 2  # a linear model at ε = 0.1 loses most images
