"""The report's markdown tables: summary (with the paper's values), temperature, robustness."""

from __future__ import annotations

from typing import Any

from defdistill.experiments.report.data import adversarial, fmt, in_order, paper_entry, stat, verdict


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _cell(result: dict, name: str, get: Any, spec: str, suffix: str = "") -> str:
    """A table cell: ``value`` for one seed, ``mean ± std`` for several."""
    mean, std = stat(result, name, get)
    if std is None or mean is None:
        return fmt(mean, spec, suffix)
    return f"{fmt(mean, spec)} ± {fmt(std, spec.lstrip('+'))}{suffix}"


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
    censored, _ = stat(result, name, lambda r: r["jsma_probs"]["samples_without_success"])
    cell = _cell(result, name, lambda r: r["jsma_probs"]["rho_adv_percent"], ".2f")
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
            f"| {name} | {fmt(t, 'g') if t else '1 (none)'} "
            f"| {_cell(result, name, lambda r: _pct(r['test_accuracy']), '.2f')} "
            f"({_cell(result, name, lambda r: r['accuracy_variation_pp'], '+.2f')}) "
            f"| {_paper_value(paper, dataset, 'accuracy_variation_by_temperature', t)} "
            f"| {_cell(result, name, lambda r: _pct(r['jsma_probs']['success_rate']), '.1f')} "
            f"| {_paper_value(paper, dataset, 'success_rate_by_temperature', t)} "
            f"| {_rho_cell(result, name)} "
            f"| {_cell(result, name, lambda r: r['jsma_probs']['samples_without_success'], '.0f')}"
            f"/{_cell(result, name, lambda r: r['jsma_probs']['samples'], '.0f')} "
            f"| {_paper_value(paper, dataset, 'rho_adv_by_temperature', t)} "
            f"| {_cell(result, name, lambda r: r['gradients']['median_log10'], '.1f')} "
            f"| {_cell(result, name, lambda r: _pct(r['gradients']['zero_fraction']), '.0f', '%')} "
            f"| {_cell(result, name, lambda r: _pct(r['saturated_fraction']), '.0f', '%')} |"
        )
    return lines


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
            f"| {_cell(result, name, soft('mean_entropy'), '.3f') if distilled else '–'} "
            f"| {_cell(result, name, lambda r: _pct(r['test_accuracy']), '.2f')} "
            f"| {_cell(result, name, lambda r: r['mean_max_logit'], '.1f')} "
            f"| {_cell(result, name, lambda r: r['mean_max_probability'], '.6f')} "
            f"| {_cell(result, name, lambda r: _pct(r['saturated_fraction']), '.0f', '%')} "
            f"| {nearest} |"
        )  # fmt: skip
    return lines


def robustness_table(result: dict) -> list[str]:
    lines = [
        "| model | T | JSMA on F % | JSMA on Z % | JSMA on softmax(Z/T) % | PGD L∞ CE on Z/T: acc % "
        "| PGD L∞ CE on F: acc % | PGD L∞ margin: acc % | C&W L2 success % (mean L2) "
        "| transfer success % | masking checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [*in_order(result["models"]), *adversarial(result["models"])]:
        name = row["name"]
        cells = [_cell(result, name, get, ".1f") for get in _ROBUSTNESS_COLUMNS]
        mean_l2 = _cell(result, name, lambda r: r["adaptive"]["cw_l2"]["mean_l2"], ".2f")
        transfer = _cell(result, name, lambda r: _pct(r["adaptive"]["transfer"]["success_rate"]), ".1f")
        lines.append(
            f"| {name} | {fmt(row['temperature'], 'g') if row['temperature'] else '–'} "
            f"| {' | '.join(cells[:6])} | {cells[6]} ({mean_l2}) "
            f"| {transfer if name != 'baseline' else '–'} | {_verdict_cell(row)} |"
        )
    return lines


_ROBUSTNESS_COLUMNS = (
    lambda r: _pct(r["jsma_probs"]["success_rate"]),
    lambda r: _pct(r["adaptive"]["jsma_logits"]["success_rate"]),
    lambda r: _pct(r["adaptive"]["jsma_temperature"]["success_rate"]),
    lambda r: _pct(r["adaptive"]["pgd_temperature"]["accuracy"]),
    lambda r: _pct(r["adaptive"]["pgd_plain"]["accuracy"]),
    lambda r: _pct(r["adaptive"]["pgd_margin"]["accuracy"]),
    lambda r: _pct(r["adaptive"]["cw_l2"]["success_rate"]),
)


def _verdict_cell(row: dict) -> str:
    found = verdict(row)
    if found is None:
        return "seeds disagree" if row.get("checks") is not None else "–"
    return "**masking**" if found["masking"] else "no sign of masking"
