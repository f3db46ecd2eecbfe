"""The report's matplotlib figures (PNG bytes): series against T, gradient histograms, examples."""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import replace
from typing import Any

from defdistill.experiments.report.columns import BY_KEY, Column, attack_value
from defdistill.experiments.report.data import (
    baseline,
    dataset_title,
    distilled,
    flagged,
    hottest,
    in_order,
    learned,
    paper_entry,
    stat,
)
from defdistill.experiments.results import seed_runs, seeds_of
from defdistill.names import AttackId


def _small_if(text: str) -> dict[str, Any]:
    """A smaller title font when the title carries a note."""
    return {"fontsize": 10} if text else {}


def _seed_note(result: dict) -> str:
    """`` (mean ± std, N seeds)`` when several seeds were run."""
    n = len(seed_runs(result))
    return f" (mean ± std, {n} seeds)" if n > 1 else ""


def _paper_series(paper: dict, dataset: str, key: str) -> tuple[list[float], list[float], bool]:
    entry = paper_entry(paper, dataset, key)
    values = {t: v for t, v in (entry.get("values") or {}).items() if t != "baseline"}
    ts = sorted(values, key=float)
    return [float(t) for t in ts], [float(values[t]) for t in ts], bool(entry.get("confirmed"))


def _figure_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _error_bars(result: dict, rows: list[dict], column: Column) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) from ``column``'s 95 % intervals, one seed only."""
    runs = seed_runs(result)
    if column.interval is None or len(runs) != 1:
        return None
    below, above = [], []
    for row in rows:
        value, (low, high, _) = column.shown(row), column.bounds(row)
        if value is None or low is None or high is None or not learned(row):
            below.append(math.nan)
            above.append(math.nan)
        else:
            below.append(max(0.0, value - column.scale * low))
            above.append(max(0.0, column.scale * high - value))
    return [below, above] if any(not math.isnan(b) for b in below) else None


def _vs_temperature(
    results: dict, paper: dict, title: str, ylabel: str,
    ours: dict[str, Any], paper_key: str | None, baseline_line: Any = None, logy: bool = False,
    censored: Any = None,
) -> bytes:  # fmt: skip
    """One panel per data set: our series and the paper's.

    A series is ``(get, style)``: ``get`` a callable of a row, or a :class:`Column`, whose
    95 % intervals (one seed) are drawn as error bars; with several seeds the bars are the
    standard deviation over seeds. ``censored(row)`` true marks a point drawn hollow (JSMA on F
    exhausted its budget on some images: the value is set by the attack's cap).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # constrained layout makes room for the legends below the axes, where they hide no point
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.6), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (dataset, result) in zip(axes[0], results.items(), strict=True):
        rows = distilled(result["models"])
        ts = [r["temperature"] for r in rows]
        for label, (get, style) in ours.items():
            column = get if isinstance(get, Column) else None
            stats = [stat(result, r["name"], column.shown if column else get) if learned(r) else (None, None)
                     for r in rows]  # fmt: skip
            means = [math.nan if m is None else m for m, _ in stats]
            bars: list[float] | list[list[float]] | None = (_error_bars(result, rows, column)
                                                            if column else None)  # fmt: skip
            if any(sd is not None for _, sd in stats):
                bars = [math.nan if sd is None else sd for _, sd in stats]
            if bars is not None:
                ax.errorbar(ts, means, yerr=bars, fmt=style, capsize=3,
                            label=label + ("" if len(seed_runs(result)) > 1 else " (95% CI)"))  # fmt: skip
            else:
                ax.plot(ts, means, style, label=label)
            hollow = [i for i, r in enumerate(rows) if censored is not None and censored(r)]
            if hollow:
                ax.plot([ts[i] for i in hollow], [means[i] for i in hollow], "o", mfc="white",
                        mec="b", ms=9, label="JSMA on F exhausted its budget on some images")  # fmt: skip
        unread = [f"{r['temperature']:g}" for r in rows if not learned(r)]
        if unread:  # a legend entry without a mark
            ax.plot([], [], " ", label=f"not drawn, did not learn: T = {', '.join(unread)}")
        if baseline_line is not None:
            mean, std = stat(result, baseline(result["models"])["name"], baseline_line)
            if mean is not None:
                ax.axhline(mean, color="grey", ls=":", label=f"ours, baseline (no distillation): {mean:.3g}")
                if std:
                    ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, lw=0)
        if paper_key:
            pts, pvs, confirmed = _paper_series(paper, dataset, paper_key)
            if pts:
                ax.plot(pts, pvs, "k--s", mfc="none",
                        label="paper" + ("" if confirmed else " (unconfirmed)"))  # fmt: skip
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.minorticks_off()
        if logy:
            _label_short_log_axis(ax)
        ticks = sorted(set(ts) | {float(t) for t in _paper_series(paper, dataset, paper_key or "")[0]})
        # the paper's nine temperatures crowd 30, 40 and 50 together on a log axis: upright
        # labels would overlap, vertical ones in a smaller font do not
        crowded = {"rotation": 90, "fontsize": 8} if len(ticks) > 6 else {}
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], **crowded)
        if ticks:  # room for our points and the paper's (e.g. its T = 100 beyond our sweep)
            ax.set_xlim(min(ticks) / 1.5, max(ticks) * 1.5)
        ax.set_xlabel("distillation temperature T")
        ax.set_ylabel(ylabel)
        note = _seed_note(result)
        ax.set_title(f"{title}: {dataset_title(dataset)}{note}", **_small_if(note))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return _figure_bytes(fig)


def _label_short_log_axis(ax: Any) -> None:
    """On a log y axis spanning less than two decades, ticks at 1, 2 and 5 times each power of
    ten, labelled as plain numbers: powers of ten alone leave one label or none there."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    low, high = ax.get_ylim()
    if low > 0 and math.log10(high / low) < 2:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def cumulative_fractions(histogram: dict) -> list[float]:
    """The fraction of the measured images at or below each edge of a gradient histogram
    (``log10_edges``, ``counts``); images whose exact amplitude is 0 (``zeros``: log10 is
    -inf) lie below every edge, so the curve starts at their fraction."""
    total = max(1, sum(histogram["counts"]) + histogram["zeros"])
    return [c / total for c in itertools.accumulate(histogram["counts"], initial=histogram["zeros"])]


def _gradient_distributions(results: dict) -> bytes:
    """Each model's gradient amplitude as a cumulative distribution over its measured images
    (from the stored histogram, linear within a bin). Unlike per-bin fractions, whose bins are
    as wide as each model's own spread, the curves compare across models whose amplitudes
    differ by hundreds of orders of magnitude, and nine of them stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.6), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (dataset, result) in zip(axes[0], results.items(), strict=True):
        rows = in_order(result["models"])
        runs = seed_runs(result)
        cmap = plt.get_cmap("viridis")
        for i, row in enumerate(rows):
            label = "baseline" if not row["distilled"] else f"T={row['temperature']:g}"
            zero = row["gradients"].get("zero") or {}
            if zero.get("k"):
                label += f" ({zero['k']} of {zero['n']} exactly 0 in float32)"
            for k, run in enumerate(runs):  # one curve per seed, same colour
                hist = next(r for r in run if r["name"] == row["name"])["gradients"]["histogram"]
                colour = cmap(i / max(1, len(rows) - 1))
                ax.plot(hist["log10_edges"], cumulative_fractions(hist), color=colour,
                        alpha=1.0 if len(runs) == 1 else 0.6, label=None if k else label)  # fmt: skip
        ax.set_xlabel("log10 of mean |dF/dx| per image (deployed softmax, T = 1; exact)", fontsize=9)
        ax.set_ylabel("fraction of images at or below")
        seeds = f" ({len(runs)} seeds, one curve each)" if len(runs) > 1 else ""
        ax.set_title(f"Gradient amplitude: {dataset_title(dataset)}{seeds}",
                     **_small_if(seeds))  # fmt: skip
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return _figure_bytes(fig)


def _point_marker(history: list[dict]) -> str | None:
    """A marker for a curve of one epoch, which a line alone would not draw."""
    return "o" if len(history) == 1 else None


def soft_label_figure(results: dict) -> bytes | None:
    """Each teacher epoch by epoch (seed 0): entropy of its softmax at T on training images,
    and held-out accuracy. None when no run recorded the curve."""
    curves = {dataset: [(r["temperature"], r["teacher_history"]) for r in distilled(result["models"])
                        if r.get("teacher_history")]
              for dataset, result in results.items()}  # fmt: skip
    curves = {d: c for d, c in curves.items() if c}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(curves), 2, figsize=(10.5, 3.8 * len(curves)), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("viridis")
    for (entropy_ax, accuracy_ax), (dataset, series) in zip(axes, curves.items(), strict=True):
        for i, (t, history) in enumerate(series):
            epochs = [h["epoch"] for h in history]
            colour = cmap(i / max(1, len(series) - 1))
            marker = _point_marker(history)
            entropy_ax.plot(epochs, [h["entropy_at_t"] for h in history], "-", color=colour, marker=marker,
                            label=f"T={t:g}")  # fmt: skip
            accuracy_ax.plot(epochs, [100 * h["heldout_accuracy"] for h in history], "-", color=colour,
                             marker=marker, label=f"T={t:g}")  # fmt: skip
        entropy_ax.set_yscale("log")
        entropy_ax.set_ylabel("mean entropy of softmax(Z/T) (nats)")
        entropy_ax.set_title(f"Teachers' soft labels by epoch: {dataset_title(dataset)}", fontsize=10)
        accuracy_ax.set_ylabel("held-out accuracy (%)")
        accuracy_ax.set_title("Teachers' accuracy by epoch (first 1,000 test images)", fontsize=10)
        for ax in (entropy_ax, accuracy_ax):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return _figure_bytes(fig)


def examples_grid(examples: dict[str, dict[str, Any]]) -> bytes | None:
    """Rows: (dataset, model, attack); columns: original, adversarial, perturbation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [(title, ex) for title, ex in examples.items() if ex]
    if not panels:
        return None
    n_cols = 3
    fig, axes = plt.subplots(len(panels), n_cols, figsize=(2.2 * n_cols, 2.2 * len(panels)),
                             squeeze=False)  # fmt: skip
    for row_axes, (title, ex) in zip(axes, panels, strict=True):
        x, adv = np.asarray(ex["x"]), np.asarray(ex["x_adv"])
        images = [x, adv, adv - x + 0.5]
        names = ["original", f"adversarial → {ex['target']}", "perturbation"]
        for ax, img, name in zip(row_axes, images, names, strict=True):
            img = np.clip(img, 0, 1)
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0),
                      cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=7)
        row_axes[0].set_ylabel(title, fontsize=7)
    return _figure_bytes(fig)


def collect_examples(results: dict) -> dict[str, dict[str, Any]]:
    """One JSMA example per panel: baseline (on F) and the hottest student (on F and on Z)."""
    examples: dict[str, dict[str, Any]] = {}
    for dataset, result in results.items():
        title = dataset_title(dataset)
        if len(seed_runs(result)) > 1:
            title += f" seed {seeds_of(result)[0]}"
        first = seed_runs(result)[0]  # an example image is one seed's, never an average
        base, top = baseline(first), hottest(first)
        examples[f"{title} baseline\nJSMA on F"] = attack_value(base, AttackId.JSMA_F, "example")
        if top is not None:
            t = f"{top['temperature']:g}"
            examples[f"{title} T={t}\nJSMA on F"] = attack_value(top, AttackId.JSMA_F, "example")
            examples[f"{title} T={t}\nJSMA on Z"] = attack_value(top, AttackId.JSMA_Z, "example")
    return examples


def _fooled_percent(key: str) -> Column:
    """Column ``key`` (an accuracy under attack) read as a success rate: 1 - it, interval flipped."""
    column = BY_KEY[key]

    def get(row: dict) -> float | None:
        value = column.get(row)
        return None if value is None else 1.0 - value

    def interval(row: dict) -> dict | None:
        low, high, n = column.bounds(row)
        return None if low is None or high is None else {"low": 1.0 - high, "high": 1.0 - low, "n": n}

    return replace(column, get=get, interval=interval)


def _variation_interval(row: dict) -> dict | None:
    """The student's accuracy interval (Wilson) shifted to pp from the baseline's accuracy."""
    found = row.get("test_accuracy_interval") or {}
    if found.get("low") is None:
        return None
    base = 100 * row["test_accuracy"] - row["accuracy_variation_pp"]
    return {"low": 100 * found["low"] - base, "high": 100 * found["high"] - base, "n": found["n"]}


ACCURACY_VARIATION = Column("accuracy_variation_pp", "Δ pp", lambda r: r["accuracy_variation_pp"], "+.2f",
                            interval=_variation_interval)


def _training_curves(results: dict) -> bytes | None:
    """Held-out accuracy epoch by epoch of the baseline and each student (the first seed's
    networks), a student flagged by the accuracy tolerance dashed. None without the curves."""
    panels = {}
    for dataset, result in results.items():
        rows = [r for r in in_order(seed_runs(result)[0]) if r.get("training_history")]
        if rows:
            panels[dataset] = (rows, set(flagged(result["models"], result["config"]["profile"])))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("viridis")
    for ax, (dataset, (rows, below)) in zip(axes[0], panels.items(), strict=True):
        students = [r for r in rows if r["distilled"]]
        for row in rows:
            history = row["training_history"]
            colour: str | tuple[float, ...]
            if row["distilled"]:
                colour = cmap(students.index(row) / max(1, len(students) - 1))
                flag = " (flagged)" if row["name"] in below else ""
                mark = " (did not learn)" if not learned(row) else flag
                label, style = f"student T={row['temperature']:g}{mark}", "--" if mark else "-"
            else:
                colour, label, style = "black", row["name"], "-"
            ax.plot([h["epoch"] for h in history], [100 * h["heldout_accuracy"] for h in history], style,
                    color=colour, marker=_point_marker(history), label=label)  # fmt: skip
            teacher = row.get("teacher_history") if not learned(row) else None
            if teacher:  # where a student did not learn, whether its teacher did
                ax.plot([h["epoch"] for h in teacher], [100 * h["heldout_accuracy"] for h in teacher], ":",
                        color=colour, marker=_point_marker(teacher),
                        label=f"its teacher T={row['temperature']:g}")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("held-out accuracy (%, first 1,000 test images)")
        ax.set_title(f"Training curves: {dataset_title(dataset)}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _figure_bytes(fig)


def _censored(row: dict) -> bool:
    return bool(attack_value(row, AttackId.JSMA_F, "samples_without_success"))


def make_figures(results: dict, paper: dict) -> dict[str, bytes]:
    success, rho = BY_KEY["jsma_probs_success_rate"], BY_KEY["rho_adv_percent"]
    amplitude = BY_KEY["gradient_mean_log10"]  # the paper's gradient curve, with its bootstrap interval
    figures = {
        "success_vs_temperature.png": _vs_temperature(
            results, paper, "JSMA success rate", "adversarial success rate (%)",
            {"ours, distilled (JSMA on F, paper's attack)":
                (success, "b-o")},
            "success_rate_by_temperature",
            baseline_line=success.shown,
        ),
        "accuracy_variation_vs_temperature.png": _vs_temperature(
            results, paper, "Accuracy variation", "accuracy - baseline accuracy (pp)",
            {"ours, distilled": (ACCURACY_VARIATION, "b-o")},
            "accuracy_variation_by_temperature",
        ),
        "rho_adv_vs_temperature.png": _vs_temperature(
            results, paper, "Robustness rho_adv", "% of features changed by JSMA on F",
            {"ours, distilled (JSMA on F)": (rho, "b-o")},
            "rho_adv_by_temperature",
            baseline_line=rho.shown, censored=_censored,
        ),
        "soft_labels_vs_temperature.png": _vs_temperature(
            results, paper, "Teacher's soft labels at T (after the profile's epochs)", "mean entropy (nats)",
            {"soft labels softmax(teacher / T)":
                (lambda r: (r["soft_labels"] or {}).get("mean_entropy"), "b-o")},
            None,
        ),
        "logit_scale_vs_temperature.png": _vs_temperature(
            results, paper, "Deployed logit scale", "mean max logit (T = 1)",
            {"distilled student": (lambda r: r["mean_max_logit"], "b-o")},
            None, baseline_line=lambda r: r["mean_max_logit"], logy=True,
        ),
        "gradient_amplitude_vs_temperature.png": _vs_temperature(
            results, paper, "Gradient amplitude", "mean log10 |dF/dx| (exact)",
            {"distilled student": (amplitude, "b-o")},
            None, baseline_line=amplitude.shown,
        ),
        "gradient_amplitude_distributions.png": _gradient_distributions(results),
        "robust_vs_temperature.png": _vs_temperature(
            results, paper, "Paper's attack vs adaptive attacks", "attack success rate (%)",
            {
                "JSMA on F (paper)": (success, "b-o"),
                "JSMA on Z (logits)": (BY_KEY["jsma_logits_success_rate"], "r-^"),
                "JSMA on softmax(Z/T)": (BY_KEY["jsma_temperature_success_rate"], "y-s"),
                "C&W L2": (BY_KEY["cw_l2_success_rate"], "m-v"),
                "PGD Linf on Z/T (CE)": (_fooled_percent("pgd_temperature_accuracy"), "g-D"),
                "PGD Linf margin on Z": (_fooled_percent("pgd_margin_accuracy"), "k-+"),
                "transfer from baseline": (BY_KEY["transfer_success_rate"], "c-x"),
            },
            None,
        ),
    }  # fmt: skip
    for name, figure in (("soft_label_convergence.png", soft_label_figure(results)),
                         ("training_curves.png", _training_curves(results))):
        if figure is not None:
            figures[name] = figure
    grid = examples_grid(collect_examples(results))
    if grid is not None:
        figures["adversarial_examples.png"] = grid
    return figures
