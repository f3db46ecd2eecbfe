"""The report's files: ``results.json``, ``results.csv``, figures, ``report.md``, ``report.html``."""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

from defdistill.devices import machine_label
from defdistill.experiments.report.columns import COLUMNS, csv_keys, csv_values
from defdistill.experiments.report.comparison import comparison
from defdistill.experiments.report.conclusion import conclusion
from defdistill.experiments.report.data import dataset_title, paper_values
from defdistill.experiments.report.disclosures import differences, sampling_note
from defdistill.experiments.report.figures import make_figures
from defdistill.experiments.report.findings import ROBUSTNESS, ablation_findings, findings
from defdistill.experiments.report.tables import (
    ablation_table,
    robustness_table,
    run_machines,
    summary_table,
    temperature_table,
    timing_table,
)
from defdistill.experiments.results import SCHEMA_VERSION, mean_std, seed_runs, seeds_of
from defdistill.io import atomic_write_bytes, atomic_write_json, atomic_write_text

_CSV_IDS = ("dataset", "seed", "name", "temperature")
CSV_COLUMNS = [*_CSV_IDS[:3], *(key for c in COLUMNS for key in csv_keys(c))]


def _flat(dataset: str, seed: int, row: dict[str, Any]) -> dict[str, Any]:
    values = {key: value for c in COLUMNS for key, value in csv_values(c, row).items()}
    return {"dataset": dataset, "seed": seed, "name": row["name"], **values}


def write_csv(path: Path, results: dict[str, dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for dataset, result in results.items():
        seeds, runs = seeds_of(result), seed_runs(result)
        flat = [_flat(dataset, seed, row) for seed, rows in zip(seeds, runs, strict=True) for row in rows]
        writer.writerows(flat)
        if len(runs) > 1:
            for row in result["models"]:
                same = [f for f in flat if f["name"] == row["name"]]
                stats = {c: mean_std([f[c] for f in same]) for c in CSV_COLUMNS if c not in _CSV_IDS}
                for i, label in enumerate(("mean", "std")):
                    ids = {"dataset": dataset, "seed": label, "name": row["name"],
                           "temperature": row["temperature"]}  # fmt: skip
                    writer.writerow({**ids, **{c: v[i] for c, v in stats.items()}})
    atomic_write_text(path, buffer.getvalue())


def write_report(out: str | Path, results: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Write all report files for ``results`` (data set name -> ``SweepResult.to_dict()``)."""
    out = Path(out)
    paper = paper_values()
    figures = make_figures(results, paper)
    for name, png in figures.items():
        atomic_write_bytes(out / "figures" / name, png)
    combined = {"schema_version": SCHEMA_VERSION, "paper": {"citation": paper.get("citation")},
                "datasets": results}  # fmt: skip
    atomic_write_json(out / "results.json", combined)
    write_csv(out / "results.csv", results)
    md = render_markdown(results, paper, list(figures))
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", render_html(md, out / "figures"))
    return {"report": out / "report.md", "html": out / "report.html", "json": out / "results.json"}


def _seeds_text(result: dict) -> str:
    seeds = seeds_of(result)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return (f"seeds {', '.join(map(str, seeds))} (every number is the mean ± sample standard "
            "deviation over the seeds; the findings use the means)")  # fmt: skip


def _reuse_text(config: dict) -> str:
    reused = len(config.get("units_reused", []))
    if not reused:
        return ""
    total = reused + len(config.get("units_computed", []))
    which = "all" if reused == total else f"{reused} of"
    return f" ({which} {total} units reused from an earlier run in this directory)"


def _ablation_section(result: dict) -> list[str]:
    """The two ablations of the mechanism: their table and a sentence each (empty without them)."""
    table = ablation_table(result)
    if not table:
        return []
    found = result["ablations"]
    return [
        f"Two ablations isolate the mechanism (no training; {found['jsma_images']} images for JSMA, "
        f"{found['images']} for the gradients, drawn at random with seed {found.get('seed', '–')} among "
        "those the baseline and the hottest student both classify correctly; `results.json`, "
        "`ablations`):",
        "",
        *table,
        "",
        *[f"- {f.text}" for f in ablation_findings(result)],
        "",
    ]


def _timing_section(result: dict) -> list[str]:
    table = timing_table(result)
    if not table:
        return []
    cfg = result["config"]
    machines = run_machines(result) or ([machine_label(cfg["machine"])] if cfg.get("machine") else [])
    on = "the machines of the last column" if len(machines) > 1 else "".join(machines)
    where = f" on {on}, executor {cfg.get('executor', 'local')}" if machines else ""
    return [f"Where the time went (seconds of wall time{where}; a distilled model's training is its "
            "teacher's plus its own; a reused unit keeps the time of the run that computed it; the last "
            "row sums the models, in seconds of one worker each):",
            "", *table, ""]


def render_markdown(results: dict, paper: dict, figures: list[str]) -> str:
    lines = [
        "# Defensive distillation: reproduction and honest evaluation",
        "",
        f"Reproduction of {paper.get('citation', 'Papernot et al. 2016 (arXiv:1511.04508)')}, "
        "by `defdistill reproduce`. Paper values marked * could not be confirmed in the "
        "paper's text (read from a figure or not stated); `–` means not reported.",
        "",
    ]
    for dataset, result in results.items():
        title = dataset_title(dataset)
        cfg = result["config"]
        lines += [
            f"## {title}",
            "",
            f"Profile `{cfg['profile']['name']}`, temperatures "
            f"{', '.join(f'{t:g}' for t in cfg['profile']['temperatures'])}; "
            f"{cfg['profile']['epochs']} epoch(s), {_seeds_text(result)}, device {cfg['device']}, "
            f"{cfg['seconds']:.0f} s this run{_reuse_text(cfg)}.",
            "",
            sampling_note(result),
            "",
            "Cells read `value [95 % interval] n=count` (Wilson for rates, bootstrap over images "
            "for means); with several seeds, mean ± standard deviation over the seeds.",
            "",
            *summary_table(dataset, result, paper),
            "",
            *[f"- {f.text}" for f in findings(dataset, result, cfg["profile"]) if f.kind not in ROBUSTNESS],
            "",
            "What the temperature does (teacher trained at T, its soft labels at T, the student "
            "trained on them at T and deployed at T = 1; the last column is the check that no "
            "two students are one network with scaled logits):",
            "",
            *temperature_table(result),
            "",
            *_ablation_section(result),
            *_timing_section(result),
            "Where ours differ from the paper, and why:",
            "",
            *[f"- {n}" for n in differences(dataset, result)],
            "",
        ]
    beside = comparison(results, paper)
    if beside:
        lines += [
            "## MNIST beside CIFAR-10",
            "",
            "The paper's comparison: distillation changes CIFAR-10 less than MNIST (paper values "
            "marked * are secondary quotes). rho_adv is measured with JSMA on the deployed "
            "softmax, as the paper's.",
            "",
            *beside,
            "",
        ]
    lines += ["## Is defensive distillation robust?", ""]
    for dataset, result in results.items():
        lines += [f"### {dataset_title(dataset)}", "", *robustness_table(result), ""]
        lines += [f"- {f.text}" for f in findings(dataset, result, result["config"]["profile"])
                  if f.kind in ROBUSTNESS]  # fmt: skip
        lines.append("")
    lines += conclusion(results)
    lines += [
        "",
        "## Figures",
        "",
        *[f"![{name}](figures/{name})" for name in figures],
        "",
    ]
    return "\n".join(lines)


def render_html(markdown: str, figure_dir: Path) -> str:
    """A self-contained HTML page (figures embedded as data URIs) from our markdown."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if not table:
            return
        head, *rest = table
        body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>")
        body.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
        body.append("</table>")
        table.clear()

    def inline(text: str) -> str:
        text = html.escape(text).replace("\\|", "|")
        parts = text.split("**")
        text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
        parts = text.split("`")
        return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").replace("\\|", "\x00").split("|")]
            cells = [c.replace("\x00", "|") for c in cells]
            if not all(set(c) <= {"-"} for c in cells):
                table.append([inline(c) for c in cells])
            continue
        flush_table()
        if line.startswith("!["):
            name = line[line.index("(") + 1 : -1].split("/")[-1]
            data = base64.b64encode((figure_dir / name).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(name)}" '
                        f'src="data:image/png;base64,{data}"></figure>')  # fmt: skip
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<ul><li>{inline(line[2:])}</li></ul>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush_table()
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "line-height:1.45}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
        "img{max-width:100%}ul{margin:.2em 0}"
    )
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>defdistill report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")  # fmt: skip
