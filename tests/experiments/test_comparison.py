"""The report's MNIST-beside-CIFAR-10 comparison: computed from the rows, deciding both ways."""

import pytest

from defdistill.experiments.report import paper_values
from defdistill.experiments.report.findings import comparison


def row(name, temperature, success, rho, censored=0):
    return {"name": name, "temperature": temperature, "distilled": temperature is not None,
            "attacks": {"jsma-f": {"success_rate": success, "rho_adv_percent": rho,
                                   "samples_without_success": censored}}}  # fmt: skip


def result(base_rho, hot_rho, censored=0, temperatures=(20.0, 100.0)):
    rows = [row("baseline", None, 0.9, base_rho)]
    rows += [row(f"distilled-T{t:g}", t, 0.5, (base_rho + hot_rho) / 2) for t in temperatures[:-1]]
    rows.append(row(f"distilled-T{temperatures[-1]:g}", temperatures[-1], 0.02, hot_rho, censored))
    return {"models": rows}


def test_cifar_reacting_less_than_mnist_agrees_with_the_paper():
    lines = comparison({"mnist": result(2.0, 14.0), "cifar10-subset": result(1.0, 3.0)}, paper_values())
    text = "\n".join(lines)
    assert "| CIFAR-10 subset (5,085 train / 1,017 test) | 90.0 → 2.0 | 87.89 → 5.11* |" in text
    assert "| 2.00 → 14.00 | 7.00 | 9.08* |" in text  # ours 14 / 2, the paper's 14.08 / 1.55
    assert "| 1.00 → 3.00 | 3.00 | 6.59* |" in text
    assert "grows 7.00× on MNIST and 3.00× on CIFAR-10 subset" in text
    assert "reacts to the temperature less than MNIST, as the paper reports" in text
    assert "lower bounds" not in text


def test_cifar_reacting_more_is_said():
    lines = comparison({"mnist": result(2.0, 14.0), "cifar10-subset": result(1.0, 14.0)}, paper_values())
    text = "\n".join(lines)
    assert "grows 7.00× on MNIST and 14.00× on CIFAR-10 subset" in text
    assert "reacts to the temperature more than MNIST, unlike the paper, which reports less" in text


def test_a_censored_mnist_factor_is_a_bound_that_still_decides_less():
    # MNIST's factor is at least 7, CIFAR's exactly 3: "less" holds whatever the cap hid
    lines = comparison({"mnist": result(2.0, 14.0, censored=3),
                        "cifar10-subset": result(1.0, 3.0)}, paper_values())  # fmt: skip
    text = "\n".join(lines)
    assert "| 2.00 → ≥ 14.00 | ≥ 7.00 |" in text
    assert "grows at least 7.00× on MNIST and 3.00× on" in text
    assert "less than MNIST, as the paper reports" in text


@pytest.mark.parametrize(("mnist_censored", "cifar_censored", "cifar_hot"), [
    (3, 5, 14.0),  # both bounds
    (3, 0, 20.0),  # CIFAR above MNIST's bound, which may be higher
    (0, 5, 3.0),   # CIFAR's bound below MNIST, but CIFAR may be higher
])  # fmt: skip
def test_a_bound_on_the_wrong_side_leaves_the_comparison_open(mnist_censored, cifar_censored, cifar_hot):
    lines = comparison({"mnist": result(2.0, 14.0, censored=mnist_censored),
                        "cifar10-subset": result(1.0, cifar_hot, censored=cifar_censored)},
                       paper_values())  # fmt: skip
    text = "\n".join(lines)
    assert "leaves open whether CIFAR-10 reacts to the temperature less or more" in text
    assert "the paper reports less (×9.08 and ×6.59 from its quoted values)." in text
    assert "as the paper reports" not in text and "unlike the paper" not in text


@pytest.mark.parametrize("results", [
    {"mnist": result(2.0, 14.0)},  # one data set
    {"mnist": result(2.0, 14.0, temperatures=(5.0,)), "cifar10-subset": result(1.0, 3.0)},  # no common T
])  # fmt: skip
def test_nothing_to_compare_gives_no_section(results):
    assert comparison(results, paper_values()) == []


def test_the_highest_common_temperature_is_compared():
    lines = comparison({"mnist": result(2.0, 14.0, temperatures=(20.0, 100.0)),
                        "cifar10-subset": result(1.0, 3.0, temperatures=(5.0, 20.0))}, paper_values())
    assert "baseline → T = 20 " in lines[0]
    assert "| 2.00 → 8.00 | 4.00 | – |" in "\n".join(lines)  # the T = 20 student, no paper value at 20
