"""The audit panel (issue 29): does the blind audit give each defence the literature's verdict?

For every member of :func:`~defdistill.experiments.panel_members.members`, on the same
``n`` test images drawn at random with a recorded seed:

* clean accuracy (one draw for a random model);
* the blind audit (:func:`~defdistill.evaluation.audit.audit`, told nothing about the
  defence): its verdict, the checks that fired, its robust accuracy (per-sample worst case
  over its attacks);
* the structure-aware reference, the attack from the literature that broke the defence,
  run knowing the structure: BPDA through the known preprocessing (Athalye et al. 2018,
  arXiv:1802.00420; the identity for bit depth, the soft encoding for the thermometer),
  EOT over the known randomness (16 draws), EOT over a Gaussian neighbourhood for k-WTA
  (Tramèr et al. 2020, arXiv:2002.08347), logit attacks for distillation, and for the robust
  models AutoAttack's standard set less FAB (Croce & Hein 2020, arXiv:2003.01690: APGD-CE,
  APGD-T, and Square, Andriushchenko et al. 2020, arXiv:1912.00049, with the audit's query
  budget) beside APGD-DLR and PGD on the margin;

each robust accuracy unconditional (a clean error counts as a failure) with its 95 %
Wilson interval (:class:`~defdistill.evaluation.stats.Proportion`); random models also
by the majority vote of 9 draws.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from defdistill.attacks import APGD, EOT, PGD, Square, bpda
from defdistill.data import Dataset
from defdistill.defences import PREPROCESS
from defdistill.devices import machine
from defdistill.evaluation.audit import audit
from defdistill.evaluation.battery import apgd_targeted
from defdistill.evaluation.probes import VOTE_DRAWS, vote
from defdistill.evaluation.stats import Proportion
from defdistill.evaluation.threats import standard_budgets
from defdistill.experiments.panel_members import Member
from defdistill.inference import correct_mask
from defdistill.names import AttackId

log = logging.getLogger(__name__)

EOT_DRAWS = 16  # structure-aware EOT: draws averaged per step
KWTA_NOISE = 0.05  # σ of the neighbourhood the k-WTA gradient is averaged over
POOL = 2000  # test images besides the attacked ones that the audit's surrogate may learn on


@dataclass(frozen=True)
class PanelConfig:
    """The budgets of one panel run (defaults fit a 2-core CPU in well under an hour)."""

    samples: int = 100
    seed: int = 0
    apgd_steps: int = 50
    square_queries: int = 2000
    jsma_samples: int = 5
    cw_iterations: int = 100
    cw_search_steps: int = 3


def structure_aware(member: Member, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    seed: int, square_queries: int) -> tuple[dict[str, torch.Tensor], str, bool]:  # fmt: skip
    """The literature's adaptive attacks on ``member`` with its structure known.

    Returns the adversarial examples by attack name, a description, and whether the model
    is random (then scored by one draw and by the vote).
    """
    model = member.model
    apgd = APGD(eps=eps, steps=steps, seed=seed)
    margin = PGD(eps=eps, steps=steps, loss="margin", seed=seed)
    if member.kind == "shattered":
        layer = model.get_submodule(PREPROCESS)
        approx = getattr(layer, "soft", None)
        through = bpda(model, PREPROCESS, approx)
        what = f"BPDA ({'soft encoding' if approx else 'identity'}) + APGD-CE, PGD margin"
        advs = {"bpda-apgd-ce": apgd.perturb(through, x, y), "bpda-pgd-margin": margin.perturb(through, x, y)}
        return advs, what, False
    if member.kind == "stochastic":
        return {"eot-apgd-ce": apgd.perturb(EOT(model, EOT_DRAWS), x, y)}, \
            f"EOT ({EOT_DRAWS} draws) + APGD-CE", True
    if member.kind == "discontinuous":
        smooth = EOT(model, EOT_DRAWS, noise=KWTA_NOISE)
        advs = {"apgd-ce": apgd.perturb(model, x, y), "neighbourhood-apgd-ce": apgd.perturb(smooth, x, y)}
        return advs, f"APGD-CE, and APGD-CE on the gradient averaged over N(x, {KWTA_NOISE}²) " \
            f"({EOT_DRAWS} draws)", False
    logit_attacks = {"apgd-dlr": APGD(eps=eps, steps=steps, loss="dlr", seed=seed).perturb(model, x, y),
                     "pgd-margin": margin.perturb(model, x, y)}  # fmt: skip
    if member.kind == "vanishing":
        return logit_attacks, "attacks on the logits: APGD-DLR, PGD margin", False
    square = Square(eps=eps, queries=square_queries, seed=seed)
    return {**logit_attacks, "apgd-ce": apgd.perturb(model, x, y),
            "apgd-t": apgd_targeted(model, x, y, eps, steps=steps, seed=seed),
            "square": square.perturb(model, x, y)}, \
        f"APGD-CE, APGD-T (DLR), Square ({square_queries} queries), APGD-DLR, PGD margin", False  # fmt: skip


def evaluate_member(member: Member, ds: Dataset, config: PanelConfig) -> dict[str, Any]:
    """Clean accuracy, blind audit and structure-aware attack of one member, as JSON."""
    start = time.perf_counter()
    n = config.samples
    order = torch.randperm(len(ds.x_test), generator=torch.Generator().manual_seed(config.seed))
    x, y = ds.x_test[order[:n]], ds.y_test[order[:n]]
    eps = standard_budgets(x).primary.eps
    model = member.model
    torch.manual_seed(config.seed)
    clean = correct_mask(model, x, y).cpu()
    # the blind audit on exactly these n images (it attacks the correct ones among them), with a
    # pool of further test images, never attacked, that its surrogate may learn the labels on
    report = audit(model, x, y, samples=n, pool=ds.x_test[order[n : n + POOL]],
                   jsma_samples=config.jsma_samples, cw_iterations=config.cw_iterations,
                   cw_search_steps=config.cw_search_steps, apgd_steps=config.apgd_steps,
                   square_queries=config.square_queries, seed=config.seed)  # fmt: skip
    attacked = report.config["samples"]
    blind = report.battery.robust_accuracy()  # unconditional over the n images
    audit_seconds = time.perf_counter() - start
    advs, what, random_model = structure_aware(member, x, y, eps, config.apgd_steps, config.seed,
                                               config.square_queries)  # fmt: skip
    survived = clean.clone()
    survived_vote = (vote(model, x) == y).cpu() if random_model else None
    per_attack = {}
    for name, x_adv in advs.items():
        ok = correct_mask(model, x_adv, y).cpu()
        per_attack[name] = Proportion.from_mask(ok).to_dict()
        survived &= ok
        if survived_vote is not None:
            survived_vote &= (vote(model, x_adv) == y).cpu()
    aware = Proportion.from_mask(survived)
    flagged = [f.to_dict() for f in report.findings if f.flagged]
    row = {
        "name": member.name, "title": member.title, "kind": member.kind,
        "literature_masking": member.masking, "literature": member.literature,
        "trained_seconds": member.trained_seconds, "training": member.training,
        "clean_accuracy": Proportion.from_mask(clean).to_dict(),
        "verdict": report.verdict.to_dict(),
        "verdict_agrees": report.verdict.masking == member.masking,
        "checks_fired": sorted({f["check"] for f in flagged if f["severity"] == "critical"}),
        "warnings": sorted({f["check"] for f in flagged if f["severity"] == "warning"}),
        "blind_robust_accuracy": blind.to_dict(),
        "blind_attacked": attacked,
        "blind_probes": report.config.get("probes", {}),
        "structure_aware": {"attack": what, "robust_accuracy": aware.to_dict(), "per_attack": per_attack},
        "gap_pp": 100 * (blind.rate - aware.rate),
        "seconds": {"audit": audit_seconds, "total": time.perf_counter() - start},
        "audit": report.to_dict(),
    }  # fmt: skip
    if survived_vote is not None:
        row["structure_aware"]["vote_robust_accuracy"] = Proportion.from_mask(survived_vote).to_dict()
        row["structure_aware"]["vote_draws"] = VOTE_DRAWS
        eot = report.battery.get(AttackId.EOT_APGD_CE)
        if eot is not None:
            row["blind_eot_vote_accuracy"] = eot.details["vote_accuracy"]
    row["acceptance"] = acceptance(row)
    log.info("%s: verdict %s, blind %.1f%%, structure-aware %.1f%% (%.0f s)", member.name,
             "masking" if report.verdict.masking else "no masking", 100 * blind.rate, 100 * aware.rate,
             row["seconds"]["total"])  # fmt: skip
    return row


def acceptance(row: dict[str, Any]) -> dict[str, Any]:
    """Issue 29's criteria for one member: the literature's verdict, and the blind robust
    accuracy within 5 pp above the structure-aware one (masked) or 3 pp (robust)."""
    limit = 5.0 if row["literature_masking"] else 3.0
    return {"verdict": row["verdict_agrees"], "gap_limit_pp": limit, "gap_ok": row["gap_pp"] <= limit}


def environment() -> dict[str, Any]:
    """What the wall time was measured on: :func:`~defdistill.devices.machine` (CPU model,
    logical CPUs, native bfloat16, GPU), the architecture, torch and its threads."""
    return {**machine(), "machine": platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}  # fmt: skip


def _machine_text(env: dict[str, Any]) -> str:
    """:func:`environment` in words."""
    bf16 = "native bf16" if env["cpu_native_bf16"] else "no native bf16"
    gpu = f", GPU {env['gpu']}" if env.get("gpu") else ""
    return (f"{env['cpu']}, {env['cpus']} logical CPUs ({bf16}){gpu}, {env['threads']} torch "
            f"thread(s), torch {env['torch']}")


def run_panel(members: list[Member], ds: Dataset, config: PanelConfig, out: Path | None = None,
              done: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Evaluate every member in turn, writing the panel to ``out`` after each one (a run cut
    short keeps the members it finished). ``done``: an earlier panel of the same config whose
    members are kept (and not rerun); its wall time is added."""
    if done is not None and done["config"] != config.__dict__:
        raise ValueError("--resume: the earlier panel.json was made with another configuration "
                         f"({done['config']}); rerun without --resume")  # fmt: skip
    start = time.perf_counter()
    earlier = done["seconds"] if done else 0.0
    rows = list(done["members"]) if done else []
    panel: dict[str, Any] = {"config": config.__dict__, "environment": environment(), "members": rows,
                             "seconds": earlier}  # fmt: skip
    finished = {r["name"] for r in panel["members"]}
    for member in members:
        if member.name in finished:
            continue
        panel["members"].append(evaluate_member(member, ds, config))
        panel["seconds"] = earlier + time.perf_counter() - start
        if out is not None:
            write_panel(panel, out)
    return panel


def _pct(p: dict[str, Any]) -> str:
    return f"{100 * p['rate']:.0f} % [{100 * p['low']:.0f}, {100 * p['high']:.0f}]"


def report_markdown(panel: dict[str, Any]) -> str:
    """The panel as a Markdown page: one row per member, then the acceptance summary."""
    c, env = panel["config"], panel["environment"]
    lines = [
        "# Audit panel: the blind audit against defences the literature broke",
        "",
        f"MNIST, the paper's network, L∞ ε = 0.3; {c['samples']} test images drawn at random (seed "
        f"{c['seed']}), the same for every member. Robust accuracy is unconditional (a clean error "
        "counts as a failure), with its 95 % Wilson interval. *Blind*: `defdistill audit` told "
        "nothing about the defence (APGD "
        f"{c['apgd_steps']} steps, Square {c['square_queries']} queries, C&W {c['cw_iterations']}×"
        f"{c['cw_search_steps']}, JSMA on {c['jsma_samples']} images). *Aware*: the literature's "
        "adaptive attack run with the structure known. Made by `defdistill audit-panel`.",
        "",
        "| member | clean | literature | audit verdict | critical checks | blind robust | aware robust "
        "(attack) | blind − aware | literature's figure |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in panel["members"]:
        aware = r["structure_aware"]
        vote_text = (f"; vote of {aware['vote_draws']}: {_pct(aware['vote_robust_accuracy'])}"
                     if "vote_robust_accuracy" in aware else "")  # fmt: skip
        literature = "broken" if r["literature_masking"] else "robust"
        verdict = ("masking" if r["verdict"]["masking"] else "no masking") + (
            "" if r["verdict_agrees"] else " (disagrees)")
        lines.append(
            f"| {r['title']} | {_pct(r['clean_accuracy'])} | {literature} | {verdict} "
            f"| {', '.join(r['checks_fired']) or '–'} "
            f"| {_pct(r['blind_robust_accuracy'])} | {_pct(aware['robust_accuracy'])} ({aware['attack']}"
            f"{vote_text}) | {r['gap_pp']:+.0f} pp | {r['literature']} |"
        )
    ok_verdicts = sum(r["acceptance"]["verdict"] for r in panel["members"])
    ok_gaps = sum(r["acceptance"]["gap_ok"] for r in panel["members"])
    k = len(panel["members"])
    trained = [f"{r['name']} ({r.get('training') or '2 epochs of Adam'}) {r['trained_seconds']:.0f} s"
               for r in panel["members"] if r["trained_seconds"]]  # fmt: skip
    lines += [
        "",
        f"Acceptance (issue 29): the literature's verdict on {ok_verdicts} of {k} members; the blind "
        f"robust accuracy within the allowed gap above the aware one (5 pp broken, 3 pp robust) on "
        f"{ok_gaps} of {k}.",
        "",
        f"Wall time {panel['seconds'] / 60:.1f} min on {_machine_text(env)}, one member "
        "after another" + (f"; trained beforehand (cached): {', '.join(trained)}"
                           if trained else "") + ".",
        "",
    ]
    random_rows = [r for r in panel["members"] if "vote_robust_accuracy" in r["structure_aware"]]
    if random_rows:
        lines += [
            "On random members the blind robust accuracy is the per-image union over the audit's "
            "attacks, each scored on its own random draw: an image counts as fooled if any one draw "
            "errs, which is below what one attack scored once gives. Like for like, the majority vote "
            f"of {VOTE_DRAWS} draws on the examples of the blind EOT attack vs on the aware attack's: "
            + "; ".join(f"{r['name']} {100 * r['blind_eot_vote_accuracy']:.0f} % vs "
                        f"{100 * r['structure_aware']['vote_robust_accuracy']['rate']:.0f} %"
                        for r in random_rows if "blind_eot_vote_accuracy" in r)
            + " (the blind figure is conditional on the images a draw classified correctly).",
            "",
        ]
    for r in panel["members"]:
        if not (r["acceptance"]["verdict"] and r["acceptance"]["gap_ok"]):
            verdict = "ok" if r["acceptance"]["verdict"] else "wrong"
            lines.append(f"- **{r['name']}** misses: verdict {verdict}, gap {r['gap_pp']:+.0f} pp "
                         f"(limit {r['acceptance']['gap_limit_pp']:g}).")
    return "\n".join(lines) + "\n"


def write_panel(panel: dict[str, Any], out: Path) -> None:
    """``panel.json`` and ``report.md`` in ``out``."""
    from defdistill.io import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "panel.json", panel)
    (out / "report.md").write_text(report_markdown(panel))
