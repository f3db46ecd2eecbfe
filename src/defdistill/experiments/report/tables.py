"""The report's markdown tables: summary (with the paper's values), temperature, robustness."""

from __future__ import annotations

from typing import Any

from defdistill.experiments.report.columns import BY_KEY, Column, columns
from defdistill.experiments.report.data import adversarial, fmt, in_order, learned, paper_entry, stat, verdict
from defdistill.experiments.results import seed_runs


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _cell(result: dict, name: str, get: Any, spec: str, suffix: str = "") -> str:
    """A table cell: ``value`` for one seed, ``mean ± std`` for several."""
    mean, std = stat(result, name, get)
    if std is None or mean is None:
        return fmt(mean, spec, suffix)
    return f"{fmt(mean, spec)} ± {fmt(std, spec.lstrip('+'))}{suffix}"


def _column_cell(result: dict, name: str, column: Column) -> str:
    """A column's cell; with one seed and an interval, ``value [low, high] n=count``."""
    cell = _cell(result, name, column.shown, column.spec, column.suffix)
    runs = seed_runs(result)
    if column.interval is None or len(runs) != 1:
        return cell
    low, high, n = column.bounds(next(r for r in runs[0] if r["name"] == name))
    if low is None or high is None:
        return cell
    spec = column.spec.lstrip("+")
    return f"{cell} [{column.scale * low:{spec}}, {column.scale * high:{spec}}] n={n}"


def _value(key: str) -> Any:
    """The table value (scaled) of column ``key``, as a getter over rows."""
    return BY_KEY[key].shown


def _paper_value(paper: dict, dataset: str, key: str, temperature: float | None) -> str:
    entry = paper_entry(paper, dataset, key)
    values = entry.get("values") or {}
    t = "baseline" if temperature is None else f"{temperature:g}"
    if t not in values:
        return "–"
    mark = "" if entry.get("confirmed") else "*"
    return f"{values[t]:g}{mark}"


def _rho_cell(result: dict, name: str) -> str:
    """``rho_adv`` with ``≥`` when never-broken samples were censored at the attack's cap."""
    censored, _ = stat(result, name, _value("rho_adv_censored_samples"))
    cell = _column_cell(result, name, BY_KEY["rho_adv_percent"])
    return f"≥ {cell}" if censored else cell


def summary_table(dataset: str, result: dict, paper: dict) -> list[str]:
    lines = [
        "| model | T | accuracy % (Δ pp) | paper Δ pp | JSMA on F success % | paper % "
        "| rho_adv % | censored | paper rho_adv % | median log10 \\|dF/dx\\| "
        "| float32 \\|dF/dx\\| = 0 | p_max = 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in in_order(result["models"]):
        t, name = row["temperature"], row["name"]
        lines.append(
            f"| {model_label(row)} | {fmt(t, 'g') if t else '1 (none)'} "
            f"| {_column_cell(result, name, BY_KEY['test_accuracy'])} "
            f"({_column_cell(result, name, BY_KEY['accuracy_variation_pp'])}) "
            f"| {_paper_value(paper, dataset, 'accuracy_variation_by_temperature', t)} "
            f"| {_column_cell(result, name, BY_KEY['jsma_probs_success_rate'])} "
            f"| {_paper_value(paper, dataset, 'success_rate_by_temperature', t)} "
            f"| {_rho_cell(result, name)} "
            f"| {_column_cell(result, name, BY_KEY['rho_adv_censored_samples'])}"
            f"/{_column_cell(result, name, BY_KEY['jsma_samples'])} "
            f"| {_paper_value(paper, dataset, 'rho_adv_by_temperature', t)} "
            + "".join(f"| {_column_cell(result, name, c)} " for c in columns(
                "gradient_median_log10", "gradient_float32_zero_fraction", "saturated_fraction"))
            + "|"
        )
    return lines


def model_label(row: dict) -> str:
    """A model's name in the tables of attacks: marked where it did not learn (its numbers are
    not read, :func:`defdistill.experiments.report.data.learned`)."""
    return row["name"] if learned(row) else f"{row['name']} (did not learn: not read)"


def temperature_table(result: dict) -> list[str]:
    """What T does (Papernot et al. 2016, Section IV): teacher, soft labels, student, scale."""
    lines = [
        "| model | T | seed | teacher acc. % | soft labels at T: mean max-p | entropy (nats) "
        "| student acc. % | deployed mean max logit | deployed mean max-p | p_max = 1 "
        "| nearest student: residual (agreement) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in in_order(result["models"]):
        name, distilled = row["name"], row["distilled"]

        def soft(key: str, r_key: str = "soft_labels") -> Any:
            return lambda r: (r[r_key] or {}).get(key)

        copy = row.get("scaled_copy")
        nearest = "–"
        if copy:
            residual = _cell(result, name, soft("relative_residual", "scaled_copy"), ".3f")
            agree = _cell(result, name, lambda r: _pct(r["scaled_copy"]["prediction_agreement"]),
                          ".1f", "%")  # fmt: skip
            nearest = f"{copy.get('nearest', '?')}: {residual} ({agree})"
        seed = row.get("train_seed")
        lines.append(
            f"| {name} | {fmt(row['temperature'], 'g') if distilled else '1 (none)'} "
            f"| {seed if isinstance(seed, int) else '–'} "
            f"| {_cell(result, name, lambda r: _pct(r['teacher_accuracy']), '.2f') if distilled else '–'} "
            f"| {_cell(result, name, soft('mean_max_probability'), '.4f') if distilled else '–'} "
            f"| {_cell(result, name, soft('mean_entropy'), '.3g') if distilled else '–'} "
            f"| {_cell(result, name, lambda r: _pct(r['test_accuracy']), '.2f')} "
            f"| {_cell(result, name, lambda r: r['mean_max_logit'], '.1f')} "
            f"| {_cell(result, name, lambda r: r['mean_max_probability'], '.6f')} "
            f"| {_cell(result, name, lambda r: _pct(r['saturated_fraction']), '.0f', '%')} "
            f"| {nearest} |"
        )  # fmt: skip
    return lines


ROBUSTNESS_COLUMNS = columns(
    "jsma_probs_success_rate", "jsma_logits_success_rate", "jsma_temperature_success_rate",
    "pgd_temperature_accuracy", "pgd_plain_accuracy", "pgd_margin_accuracy",
)


def robustness_table(result: dict) -> list[str]:
    """Each attack's rate per model, and the robust accuracy: per image, no attack at the
    primary budget fooled it; unconditional (a clean error counts as a failure) and on the
    correctly classified images."""
    lines = [
        "| model | T | " + " | ".join(c.header for c in ROBUSTNESS_COLUMNS)
        + " | C&W L2 success % (mean L2) | transfer success % | robust acc. % [95% CI] "
        "| on clean-correct % [95% CI] | masking checks |",
        "|---|---|" + "---|" * (len(ROBUSTNESS_COLUMNS) + 5),
    ]
    for row in [*in_order(result["models"]), *adversarial(result["models"])]:
        name = row["name"]
        cells = [_column_cell(result, name, c) for c in ROBUSTNESS_COLUMNS]
        cw = _column_cell(result, name, BY_KEY["cw_l2_success_rate"])
        mean_l2 = _column_cell(result, name, BY_KEY["cw_l2_mean"])
        transfer = _column_cell(result, name, BY_KEY["transfer_success_rate"])
        lines.append(
            f"| {model_label(row)} | {fmt(row['temperature'], 'g') if row['temperature'] else '–'} "
            f"| {' | '.join(cells)} | {cw} ({mean_l2}) | {transfer} "
            f"| {_column_cell(result, name, BY_KEY['robust_accuracy'])} "
            f"| {_column_cell(result, name, BY_KEY['robust_accuracy_conditional'])} "
            f"| {_verdict_cell(row)} |"
        )
    return lines


def _verdict_cell(row: dict) -> str:
    found = verdict(row)
    if found is None:
        return "seeds disagree" if row.get("checks") is not None else "–"
    return "**masking**" if found["masking"] else "no sign of masking"


ABLATION_ROWS = {
    "baseline": "baseline, float32",
    "baseline_scaled": "baseline × T, float32 (scale alone)",
    "baseline_scaled_float64": "baseline × T, float64",
    "student": "student at T, float32",
    "student_float64": "student at T, float64 (precision alone)",
}


def _proportion_cell(found: dict | None) -> str:
    if not found or found.get("rate") is None:
        return "–"
    return (f"{found['k']}/{found['n']} = {100 * found['rate']:.1f} "
            f"[{100 * found['low']:.1f}, {100 * found['high']:.1f}]")  # fmt: skip


def ablation_table(result: dict) -> list[str]:
    """The two ablations' rows (:mod:`defdistill.evaluation.ablations`): JSMA's success rates
    (k/n % [95 % Wilson]), the exactly-zero Jacobians, the median exact log10 amplitude and
    the median gap between the two largest logits."""
    found = result.get("ablations")
    if not found:
        return []
    lines = [
        f"| model (T = {found['temperature']:g}) | JSMA on F % | JSMA on F, exact pair choice % "
        "| JSMA on Z % | zero Jacobian % | median log10 exact \\|dF/dx\\| | median top-2 logit gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in ABLATION_ROWS.items():
        row = found["rows"].get(key)
        if row is None:
            continue
        lines.append(
            f"| {label} | {_proportion_cell(row.get('jsma_f'))} "
            f"| {_proportion_cell(row.get('jsma_f_exact'))} "
            f"| {_proportion_cell(row.get('jsma_z'))} | {_proportion_cell(row.get('zero_jacobian'))} "
            f"| {fmt(row.get('median_log10_exact'), '.1f')} | {fmt(row.get('median_logit_gap'), '.0f')} |"
        )
    return lines


def row_machines(row: dict[str, Any]) -> list[str]:
    """The machines that computed a row's timings, in order (:func:`defdistill.devices.machine_label`):
    its teacher's training and its own (not a shipped model's, trained before the run), its
    evaluation. A run resumed on other machines names them all; empty where none was recorded."""
    trained = [] if row.get("shipped") else [*(row.get("teacher_train_machines") or []),
                                             *(row.get("train_machines") or [])]  # fmt: skip
    measured = row.get("eval_machines") or ([row["eval_machine"]] if row.get("eval_machine") else [])
    return list(dict.fromkeys([*trained, *measured]))


def run_machines(result: dict) -> list[str]:
    """Every machine that computed a timing of ``result`` (seed 0), in order of first use."""
    return list(dict.fromkeys(m for row in result["models"] for m in row_machines(row)))


def timing_table(result: dict) -> list[str]:
    """Where the run's time went, per model (seed 0): training (the teacher's and the
    student's for a distilled model) and each evaluation step, in seconds of wall time of the
    unit that computed it (a reused unit keeps the time of the run that computed it). When
    more than one machine computed them (a run resumed elsewhere), a last column names each
    row's (:func:`row_machines`). The last row sums the column over the models: seconds of
    one worker each, not the run's wall time when the units ran in parallel."""
    rows = [*in_order(result["models"]), *adversarial(result["models"])]
    if not any(r.get("timings") for r in rows):
        return []
    steps = list(dict.fromkeys(k for r in rows for k in r.get("timings") or {}))
    several = len(run_machines(result)) > 1
    lines = [
        "| model | training s | " + " | ".join(f"{k} s" for k in steps) + " | total s |"
        + (" computed on |" if several else ""),
        "|---|---|" + "---|" * (len(steps) + 1 + several),
    ]
    sums: dict[str, float] = {}
    for row in rows:
        training = [row.get("teacher_train_seconds"), row.get("train_seconds")]
        trained = sum(t for t in training if t is not None) if any(t is not None for t in training) else None
        timings = row.get("timings") or {}
        train_cell = fmt(trained, ".0f") + (f" ({training[0]:.0f} + {training[1]:.0f})"
                                            if None not in training else "")  # fmt: skip
        if row.get("shipped"):  # trained elsewhere, before: not part of this run's time
            trained, train_cell = None, f"shipped ({fmt(training[1], '.0f')} when trained)"
        total = (trained or 0.0) + sum(timings.values())
        for key, seconds in [("training", trained or 0.0), *timings.items(), ("total", total)]:
            sums[key] = sums.get(key, 0.0) + (seconds or 0.0)
        where = f" {' + '.join(row_machines(row)) or '–'} |" if several else ""
        lines.append(f"| {row['name']} | {train_cell} | "
                     + " | ".join(fmt(timings.get(k), ".1f") for k in steps) + f" | {total:.0f} |" + where)
    lines.append(f"| all models | {sums['training']:.0f} | "
                 + " | ".join(f"{sums.get(k, 0.0):.1f}" for k in steps) + f" | {sums['total']:.0f} |"
                 + (" |" if several else ""))
    return lines
