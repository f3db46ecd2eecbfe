"""The report's prose per data set: the conclusion and the differences from the paper."""

import pytest

from defdistill.evaluation.stats import Proportion
from defdistill.experiments.report.conclusion import conclusion
from defdistill.experiments.report.disclosures import differences, sampling_note
from defdistill.experiments.report.findings import ROBUSTNESS, findings
from defdistill.experiments.report.soft_labels import soft_label_convergence
from defdistill.experiments.report.tables import model_label
from defdistill.experiments.report.trend import RankTrend, _discordance_counts
from defdistill.names import StatementKind


def row(name, temperature, *, success, masking=False, pgd=0.0, l2=1.0, drop=0.0, zero=0, cap=14.29):
    """A model's row: JSMA on F's ``success`` of 180 attempts, ``zero`` of 200 zero Jacobians,
    robust accuracy ``pgd`` of 20 clean-correct images (of 22 drawn)."""
    return {
        "name": name, "temperature": temperature, "distilled": temperature is not None,
        "accuracy_variation_pp": drop,
        "attacks": {"jsma-f": {"success_rate": success, "rho_adv_censored_at_percent": cap,
                               "success_interval": Proportion.of(round(180 * success), 180).to_dict()},
                    "pgd-ce-zt": {"accuracy": pgd + 0.05}, "pgd-margin": {"accuracy": pgd, "samples": 20},
                    "cw-l2": {"mean_l2": l2}},
        "robust_accuracy": {"unconditional_interval": Proportion.of(round(20 * pgd), 22).to_dict(),
                            "conditional_interval": Proportion.of(round(20 * pgd), 20).to_dict()},
        "gradients": {"zero_fraction": zero / 200, "median_log10": -3.0,
                      "zero": Proportion.of(zero, 200).to_dict()},
        "soft_labels": None, "checks": {"verdict": {"masking": masking}},
    }  # fmt: skip


def result(rows, *, shape=(1, 28, 28), n_train=60000, profile=None):
    profile = {"name": "quick", "epochs": 4, "limit_train": None, "attack_samples": 50,
               "targets": "all", **(profile or {})}  # fmt: skip
    signature = {"input_shape": list(shape), "n_train": n_train}
    return {"config": {"profile": profile, "dataset_signature": signature}, "models": rows}


MNIST = result([row("baseline", None, success=0.9), row("distilled-T20", 20.0, success=0.0, masking=True,
                                                         drop=-1.2, zero=199)])  # fmt: skip
CIFAR = result([row("baseline", None, success=1.0, pgd=0.10, l2=0.38, cap=14.45),
                row("distilled-T20", 20.0, success=0.81, pgd=0.40, l2=0.85, drop=-13.9, cap=14.45)],
               shape=(3, 32, 32), n_train=5085, profile={"epochs": 20, "attack_samples": 20})  # fmt: skip


def test_masking_is_concluded_only_for_the_data_set_whose_student_masks():
    text = "\n".join(conclusion({"mnist": MNIST, "cifar10-subset": CIFAR}))
    assert text.startswith("**No.** On MNIST, the distilled networks")
    assert "masks gradients" in text
    cifar = text.split("\n\n")[1]
    assert cifar.startswith("On CIFAR-10 subset (5,085 train / 1,017 test), no masking check fires")
    # the rates with their Wilson intervals and n (146/180: [74.8, 86.2], checked by hand)
    assert "still succeeds on 81.1% [74.8, 86.2] of 180 attempts" in cifar
    assert "(baseline 100.0% [97.9, 100.0] of 180)" in cifar
    # the robust accuracy, unconditional (8 of 22) then on the clean-correct images (8 of 20)
    assert "36.4% [19.7, 57.0] of 22 drawn images, conditionally 40.0% [21.9, 61.3] of 20" in cifar
    assert "mean L2 of 0.85 (baseline 0.38), at a clean accuracy 13.9 pp below" in cifar
    assert "upper bound" in cifar and "masks gradients" not in cifar


def test_without_any_masking_there_is_no_no():
    text = "\n".join(conclusion({"cifar10-subset": CIFAR}))
    assert "**No.**" not in text
    assert "do not show the masking pattern" in text


def test_seeds_that_disagree_are_not_summarised_as_no_masking():
    split = result([row("baseline", None, success=1.0), row("distilled-T20", 20.0, success=0.5)])
    split["models"][1]["checks"] = {"verdict": {}}  # what the aggregation stores when seeds disagree
    text = "\n".join(conclusion({"cifar10-subset": split}))
    assert "the seeds disagree on whether the T = 20 student masks gradients" in text
    assert "no masking check fires" not in text


def test_differences_name_this_data_sets_cap_and_training_set():
    mnist = "\n".join(differences("mnist", MNIST))
    assert "112 of 784 input features, 14.29 %" in mnist and "The paper's MNIST value" in mnist
    assert "4 epoch(s) instead of the paper's 50;" in mnist and "subset" not in mnist
    assert "Carlini & Wagner" not in mnist  # the profile records no C&W budget: nothing to disclose
    budget = result(MNIST["models"], profile={"cw_iterations": 1000, "cw_search_steps": 9})
    cw = [n for n in differences("mnist", budget) if n.startswith("Carlini & Wagner")]
    assert cw and "9 binary-search steps" in cw[0] and "up to 1,000 Adam iterations" in cw[0]
    assert "the T = 20 student is 1.20 pp below the baseline" in mnist
    cifar = "\n".join(differences("cifar10-subset", CIFAR))
    assert "444 of 3,072 input features, 14.45 %" in cifar and "The paper's MNIST value" not in cifar
    assert "on the subset's 5,085 training images (the paper trained on the full set)" in cifar
    assert "first 20 of those" in sampling_note(CIFAR)  # JSMA on the first 20 correct images of the draw
    assert "13.90 pp below the baseline" in cifar
    paper_profile = {"name": "paper", "epochs": 50}
    at_fifty = result(CIFAR["models"], shape=(3, 32, 32), n_train=5085, profile=paper_profile)
    paper = "\n".join(differences("cifar10-subset", at_fifty))
    assert "Profile `paper`: the paper's 50 epochs, on the subset's 5,085 training images" in paper
    assert "instead of the paper's 50" not in paper


def test_the_paper_profile_names_its_farthest_student_not_a_short_profiles_cost():
    rows = [row("baseline", None, success=0.9), row("distilled-T5", 5.0, success=0.1, drop=0.07),
            row("distilled-T100", 100.0, success=0.0, drop=-0.06)]
    text = "\n".join(differences("mnist", result(rows, profile={"name": "paper", "epochs": 50})))
    assert "instead of the paper's 50" not in text and "short profiles" not in text
    assert ("at the paper's 50 epochs the student farthest from the baseline's accuracy is the T = 5 "
            "one, +0.07 pp") in text
    above = "\n".join(differences("mnist", result(rows[:2])))  # short, but no student below: no cost named
    assert "short profiles" not in above and "divides the loss's gradient by T." in above


def test_small_soft_label_entropies_keep_their_significant_digits():
    rows = [row("baseline", None, success=0.9), row("distilled-T2", 2.0, success=0.8),
            row("distilled-T100", 100.0, success=0.0)]
    rows[1]["soft_labels"], rows[2]["soft_labels"] = {"mean_entropy": 0.00041}, {"mean_entropy": 0.0473}
    text = next(f.text for f in findings("mnist", result(rows), {"epochs": 50})
                if f.kind is StatementKind.SOFT_LABELS)  # fmt: skip
    assert "carry 0.00041 nats" in text and "0.0473 nats" in text and "0.000 nats" not in text


def test_statements_are_typed_and_the_robustness_section_selects_them_by_kind():
    masked = findings("mnist", MNIST, MNIST["config"]["profile"])
    kinds = [f.kind for f in masked]
    assert kinds[0] is StatementKind.PAPER_ATTACK and StatementKind.MASKING in kinds
    assert StatementKind.ADAPTIVE not in kinds and StatementKind.ROBUST_ACCURACY in kinds
    unmasked = [f.kind for f in findings("cifar10-subset", CIFAR, CIFAR["config"]["profile"])]
    assert StatementKind.ADAPTIVE in unmasked and StatementKind.MASKING not in unmasked
    assert {StatementKind.GRADIENTS, StatementKind.ACCURACY} <= set(unmasked) - ROBUSTNESS


def test_a_masking_student_that_keeps_robust_accuracy_is_not_called_only_masking():
    def texts(student_robust):
        rows = [row("baseline", None, success=1.0, pgd=0.0),
                row("distilled-T100", 100.0, success=0.2, masking=True, pgd=student_robust, drop=-22.1)]
        said = findings("cifar10-subset", result(rows), {"epochs": 50})
        return {f.kind: f.text for f in said}

    broken = texts(0.0)  # every image broken, as on MNIST: the masking is the whole story
    assert broken[StatementKind.MASKING].startswith("**This is gradient masking, not robustness.**")
    assert "keeps more than the baseline" not in broken[StatementKind.ROBUST_ACCURACY]
    residue = texts(0.9)  # 18 of 22 against 0 of 22: the intervals separate
    assert residue[StatementKind.MASKING].startswith("**The paper's attack is stopped by gradient masking.**")
    assert "not robustness" not in residue[StatementKind.MASKING]
    robust = residue[StatementKind.ROBUST_ACCURACY]
    assert "the 95 % intervals separate" in robust
    assert "keeps more than the baseline, at a clean accuracy 22.1 pp below the baseline's" in robust
    assert "an undistilled network of the same clean accuracy" in robust
    overlap = texts(0.1)  # 2 of 22 against 0 of 22: the intervals overlap, nothing is claimed
    assert "keeps more than the baseline" not in overlap[StatementKind.ROBUST_ACCURACY]


def test_zero_jacobians_are_counted_exactly_never_rounded_to_all():
    gradients = next(f for f in findings("mnist", MNIST, MNIST["config"]["profile"])
                     if f.kind is StatementKind.GRADIENTS).text  # fmt: skip
    assert "199 of 200 measured images" in gradients and "100%" not in gradients
    MNIST["models"][1]["gradients"]["zero"] = Proportion.of(200, 200).to_dict()
    try:
        gradients = next(f for f in findings("mnist", MNIST, MNIST["config"]["profile"])
                         if f.kind is StatementKind.GRADIENTS).text  # fmt: skip
    finally:
        MNIST["models"][1]["gradients"]["zero"] = Proportion.of(199, 200).to_dict()
    assert "all 200 measured images" in gradients


def test_a_gradient_amplitude_that_grows_is_said_to_rise():
    """A student whose softmax gradient is larger than the baseline's (a short profile's) is
    not said to have it fall by a negative number of orders of magnitude."""
    rows = [row("baseline", None, success=0.9), row("distilled-T5", 5.0, success=0.6)]
    rows[1]["gradients"] = {**rows[1]["gradients"], "median_log10": -2.5}
    text = next(f.text for f in findings("mnist", result(rows), result(rows)["config"]["profile"])
                if f.kind is StatementKind.GRADIENTS)  # fmt: skip
    assert "rises from 10^-3.0 (baseline) to 10^-2.5 at T = 5, 0.5 orders of magnitude" in text


def test_comparisons_of_two_rates_say_whether_their_intervals_separate():
    paper = next(f for f in findings("mnist", MNIST, MNIST["config"]["profile"])
                 if f.kind is StatementKind.PAPER_ATTACK).text  # fmt: skip
    assert "intervals separate" in paper  # 90 % against 0 % of 180 attempts
    cifar = result([row("baseline", None, success=0.85), row("distilled-T20", 20.0, success=0.81)])
    paper = next(f for f in findings("cifar10-subset", cifar, cifar["config"]["profile"])
                 if f.kind is StatementKind.PAPER_ATTACK).text  # fmt: skip
    assert "no difference is established" in paper


def curve(t, entropies, accuracy=0.99):
    return {"temperature": t, "teacher_history": [
        {"epoch": i + 1, "entropy_at_t": e, "heldout_accuracy": accuracy} for i, e in enumerate(entropies)]}


def test_the_soft_labels_order_in_t_is_claimed_only_where_the_teachers_tails_separate():
    settled = [curve(5, [0.5, 0.2, 0.10, 0.10, 0.101]), curve(20, [0.9, 0.5, 0.30, 0.31, 0.30])]
    text = soft_label_convergence(settled)
    # the last 3 epochs: geometric mean of 0.10, 0.10, 0.101 = 0.1003; least-squares slope of the
    # log through epochs 3-5 = ln(1.01) / 2, i.e. +1.0 % over the tail
    assert "T = 5: 0.1 nats [0.1, 0.101] over epochs 3–5, fitted change +1 % from epoch 3" in text
    assert "At convergence the mean entropy of the soft labels rises with T" in text
    assert "Still moving" not in text
    falling = [settled[0], curve(100, [0.9, 0.3, 0.05, 0.04, 0.04])]  # -20 % fitted over epochs 3-5
    text = soft_label_convergence(falling)
    assert "fitted change -20 %" in text
    assert "Still moving (a fitted change of 10 % or more): T = 100." in text
    assert "After 5 epochs, not at convergence, the mean entropy of the soft labels falls as T rises" in text
    # tails that overlap (one epoch's noise): no order is claimed, whichever way the last values go
    noisy = [curve(1, [0.05, 0.02, 0.004, 0.007, 0.005]), curve(2, [0.08, 0.03, 0.006, 0.004, 0.007])]
    text = soft_label_convergence(noisy)
    assert "The ranges of T = 1 and 2 overlap" in text and "no order in T" in text
    assert "rises" not in text and "falls" not in text
    assert soft_label_convergence([{"temperature": 5, "teacher_history": None}]) is None
    # one epoch (reproduce --epochs 1): no trend can be fitted, so no curve counts as settled
    text = soft_label_convergence([curve(5, [0.3]), curve(20, [0.5])])
    assert "T = 5: 0.3 nats [0.3, 0.3] over epochs 1–1, one epoch: no trend" in text
    assert "Still moving (a fitted change of 10 % or more): T = 5, T = 20." in text
    assert "After 1 epoch, not at convergence, the mean entropy of the soft labels rises with T" in text
    # a steady 2 % per epoch: 6 % over the last fifth (epochs 17-20) looks settled, the fitted
    # change over the last half (epochs 11-20) is 0.98^9 - 1 = -16.6 %: still moving
    steady = [curve(5, [0.98**e for e in range(1, 21)])]
    text = soft_label_convergence(steady)
    assert "over epochs 17–20, fitted change -17 % from epoch 11" in text
    assert "Still moving (a fitted change of 10 % or more): T = 5." in text
    # settled, but at accuracies 9 pp apart (the CIFAR-10 subset's T = 5 and 20 teachers): the
    # order is reported as mixed with how well each teacher learned, not as "at convergence"
    apart = [curve(5, [1.6, 1.5, 1.44, 1.44, 1.44], 0.491), curve(20, [1.9, 1.7, 1.62, 1.61, 1.61], 0.402)]
    text = soft_label_convergence(apart)
    assert "rises with T" in text and "8.9 pp apart" in text and "at convergence" not in text.lower()


def test_a_flagged_student_is_named_and_pointed_to_its_training_curve():
    # CIFAR's T = 20 student is 13.9 pp below its baseline, beyond the default 1.5 pp tolerance
    def accuracy_statement(res):
        return next(f.text for f in findings("cifar10-subset", res, res["config"]["profile"])
                    if f.kind is StatementKind.ACCURACY)  # fmt: skip

    assert accuracy_statement(CIFAR) == "Accuracy more than 1.5 pp below the baseline: distilled-T20."
    history = [{"epoch": 1, "heldout_accuracy": 0.3}, {"epoch": 2, "heldout_accuracy": 0.38}]
    with_curve = result([CIFAR["models"][0], {**CIFAR["models"][1], "training_history": history}],
                        shape=(3, 32, 32), n_train=5085, profile={"max_accuracy_drop": 15.0})  # fmt: skip
    assert accuracy_statement(with_curve).startswith("Every distilled model is within 15.0 pp")
    flagged = result(with_curve["models"], shape=(3, 32, 32), n_train=5085)
    assert accuracy_statement(flagged).endswith(
        "distilled-T20 (their held-out accuracy epoch by epoch: figure training_curves.png).")


def test_a_student_that_did_not_learn_stays_flagged_and_the_verdicts_read_the_hottest_that_did():
    at_chance = {**row("distilled-T100", 100.0, success=0.0, drop=-88.0), "learned": False,
                 "test_accuracy": 0.098, "teacher_accuracy": 0.1135}  # fmt: skip
    res = result([*MNIST["models"], at_chance])
    said = findings("mnist", res, res["config"]["profile"])
    verdicts = [f.text for f in said if f.kind is StatementKind.VERDICT]
    assert verdicts == ["Masking checks on the T = 20 student (the rule `defdistill audit` applies): "
                        "apparent robustness is gradient masking, in every seed."]  # fmt: skip
    unread = [f.text for f in said if f.kind is StatementKind.ACCURACY][-1]
    assert unread.startswith("**Did not learn in 4 epoch(s)**")
    assert "T = 100 (student 9.8%, teacher 11.3%)" in unread
    assert unread.endswith("the verdicts above are the T = 20 student's, the hottest that learned.")
    assert "\n".join(conclusion({"mnist": res})).startswith("**No.** On MNIST")
    assert model_label(at_chance) == "distilled-T100 (did not learn: not read)"
    assert model_label(MNIST["models"][1]) == "distilled-T20"


def test_where_no_student_learned_nothing_is_concluded():
    res = result([MNIST["models"][0], {**MNIST["models"][1], "learned": False, "test_accuracy": 0.1,
                                       "teacher_accuracy": 0.1}])  # fmt: skip
    said = findings("mnist", res, res["config"]["profile"])
    assert not [f for f in said if f.kind in ROBUSTNESS]  # no verdict on a network at chance
    assert said[-1].text.endswith("no distilled model learned, so none is read.")
    assert "\n".join(conclusion({"mnist": res})).startswith(
        "On MNIST, no distilled network learned (every student or its teacher at the chance floor)")


def test_kendall_trend_matches_hand_counts():
    # orderings of 4 values by inversions: 1, 3, 5, 6, 5, 3, 1 (the Mahonian numbers)
    assert _discordance_counts(4) == [1, 3, 5, 6, 5, 3, 1]
    assert sum(_discordance_counts(9)) == 362880
    # y = 1, 3, 2, 4: one discordant pair of 6, tau = 4/6; |tau| >= 2/3 for 0, 1, 5 or 6
    # inversions: (1 + 3 + 3 + 1) / 24
    trend = RankTrend.of([1, 2, 3, 4], [1, 3, 2, 4])
    assert trend.tau == pytest.approx(2 / 3) and trend.p_value == pytest.approx(8 / 24)
    # a perfect reversal of 5: only 2 of 120 orderings are as extreme
    trend = RankTrend.of([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert trend.tau == -1 and trend.p_value == pytest.approx(2 / 120)
    with pytest.raises(ValueError, match="distinct"):
        RankTrend.of([1, 2, 3], [1, 1, 2])


def test_a_trend_across_temperatures_is_claimed_when_neighbours_overlap_but_kendall_separates():
    # six teachers still moving (-15 % fitted over the last half), each tail (the last 3 epochs:
    # v, 1.3 v, v) overlapping its neighbour's,
    # the levels rising with T but for one swap (T = 20 and 30): 14 of 15 pairs concordant,
    # tau = 13/15; orderings of 6 with at most one inversion (or one short of all): 2 x (1 + 5)
    # of 720, p = 12/720 = 0.017
    levels = {1: 1.0, 2: 1.2, 10: 1.4, 20: 1.7, 30: 1.6, 100: 1.9}
    rows = [curve(t, [2 * v, 2 * v, 2 * v, 1.5 * v, 1.3 * v, v, 1.3 * v, v]) for t, v in levels.items()]
    text = soft_label_convergence(rows)
    assert "Still moving (a fitted change of 10 % or more): all 6 curves." in text
    assert "The ranges of all 5 pairs of neighbouring temperatures overlap" in text
    assert "overlap. Across the 6 temperatures, after 8 epochs, not at convergence, the soft labels' " \
           "entropy rises with T as a trend (Kendall's τ between T and the tails' geometric means " \
           "+0.87, exact two-sided p = 0.017 over 6 temperatures" in text
    assert "not a property of T at convergence" in text
    # levels falling then rising with T (a V), neighbours overlapping: no trend
    shuffled = dict(zip(levels, [1.5, 1.3, 1.1, 1.0, 1.25, 1.45], strict=True))  # a V
    rows = [curve(t, [2 * v, 2 * v, 2 * v, 1.5 * v, 1.3 * v, v, 1.3 * v, v]) for t, v in shuffled.items()]
    text = soft_label_convergence(rows)
    assert "no trend is found either" in text and "no order in T" in text and "rises" not in text
    # two teachers with the same curve (tied levels): Kendall's exact test does not apply, and
    # the report says no order rather than failing at the end of a run
    rows = [curve(t, [2 * v, 2 * v, 2 * v, 1.5 * v, 1.3 * v, v, 1.3 * v, v])
            for t, v in {**levels, 2: 1.0}.items()]  # fmt: skip
    text = soft_label_convergence(rows)
    assert "overlap, so after 8 epochs, not at convergence, no order in T" in text and "Kendall" not in text


def _with_cw(rows, intervals):
    for r, (mean, low, high) in zip(rows, intervals, strict=True):
        r["attacks"]["cw-l2"] = {"mean_l2": mean, "success_interval": Proportion.of(200, 200).to_dict(),
                                 "mean_l2_interval": {"mean": mean, "low": low, "high": high, "n": 200}}
    return rows


def test_cw_distances_are_compared_through_their_intervals_never_called_alike():
    from defdistill.experiments.report.phrases import cw_distance

    base, top = _with_cw([row("baseline", None, success=0.9), row("distilled-T100", 100.0, success=0.0)],
                         [(1.12, 1.07, 1.17), (1.46, 1.39, 1.52)])  # the paper run's MNIST numbers
    assert cw_distance(base, top) == ("with a mean L2 1.3 times the baseline's (1.46 [1.39, 1.52] against "
                                      "1.12 [1.07, 1.17]; the 95 % intervals separate)")
    base, top = _with_cw([base, top], [(0.36, 0.22, 0.51), (0.78, 0.43, 1.19)])  # 2.2 times, n = 9
    assert cw_distance(base, top) == ("with a mean L2 of 0.78 [0.43, 1.19] against the baseline's "
                                      "0.36 [0.22, 0.51] (the 95 % intervals overlap: no difference is "
                                      "established)")


def test_the_masking_conclusion_gives_the_measured_logit_scale_and_distance():
    rows = _with_cw([row("baseline", None, success=0.9),
                     row("distilled-T100", 100.0, success=0.0, masking=True, zero=199)],
                    [(1.12, 1.07, 1.17), (1.46, 1.39, 1.52)])  # fmt: skip
    rows[0]["mean_max_logit"], rows[1]["mean_max_logit"] = 40.0, 3038.3
    masked = result(rows)
    text = "\n".join(conclusion({"mnist": masked}))
    assert ("The T = 100 student's logits are 76 times the baseline's (mean max logit 3,038 against "
            "40.0)") in text
    assert "C&W L2 succeeds on 100.0% [98.1, 100.0] of 200 images with a mean L2 1.3 times" in text
    assert "about T times" not in text and "baseline's distortion" not in text
    said = next(f.text for f in findings("mnist", masked, masked["config"]["profile"])
                if f.kind is StatementKind.MASKING)  # fmt: skip
    assert "as close as before" not in said and "mean L2 1.3 times the baseline's" in said


def test_differences_name_the_networks_trained_in_bfloat16_and_only_those():
    assert not any("bfloat16" in n for n in differences("mnist", MNIST))  # float32: the paper's
    control = {**row("adversarial-pgd", None, success=0.0), "shipped": {"name": "x"}, "precision": "fp32"}
    rows = [{**r, "precision": "bf16"} for r in MNIST["models"]] + [control]
    every = [n for n in differences("mnist", result(rows)) if n.startswith("Training arithmetic")]
    assert len(every) == 1 and "for every network this run trained" in every[0]  # not the shipped one
    mixed = [{**rows[0], "precision": "fp32"}, *rows[1:]]
    names = next(n for n in differences("mnist", result(mixed)) if n.startswith("Training arithmetic"))
    assert f"for {', '.join(r['name'] for r in rows[1:-1])} (" in names
