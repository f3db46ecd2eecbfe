"""The report's columns, defined once: ``results.csv`` writes every one, the tables pick theirs.

A :class:`Column` names a number of a model's row (``results.json``), how to read it and
how a table prints it. Attack numbers are read by attack id (:class:`defdistill.names.AttackId`).
A column with an ``interval`` (a :class:`~defdistill.evaluation.stats.Proportion` or
:class:`~defdistill.evaluation.stats.MeanEstimate` dict: 95 % Wilson or bootstrap) writes
``<key>_low``, ``<key>_high`` and ``<key>_n`` to ``results.csv`` and prints
``value [low, high] n=…`` in a table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from defdistill.names import AttackId
from defdistill.names import AttackId as A

SUCCESS, ACCURACY = "success_rate", "accuracy"  # an attack's two rates in a row (AttackSummary.to_dict)


@dataclass(frozen=True)
class Column:
    """One number of a model's row.

    Attributes:
        key: its name in ``results.csv``.
        header: its header in a markdown table.
        get: ``get(row)``: the value as stored (fractions as fractions), None if absent.
        spec: the format of a table cell.
        scale: the factor a table multiplies the value by (100 for a percentage).
        suffix: appended to a table cell.
        interval: ``interval(row)``: the value's interval dict (``low``, ``high``, ``n``), None
            if absent.
    """

    key: str
    header: str
    get: Callable[[dict[str, Any]], Any]
    spec: str = ".1f"
    scale: float = 1.0
    suffix: str = ""
    interval: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None

    def bounds(self, row: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(low, high, n)`` as stored (unscaled); Nones without an interval."""
        found = (self.interval(row) if self.interval else None) or {}
        return found.get("low"), found.get("high"), found.get("n")

    def shown(self, row: dict[str, Any]) -> Any:
        """The value as a table shows it (scaled), None if absent."""
        value = self.get(row)
        return None if value is None else self.scale * value


def attack_value(row: dict[str, Any], attack: AttackId, field: str) -> Any:
    """``field`` of attack ``attack`` in a model's row, None if that attack did not run."""
    return ((row.get("attacks") or {}).get(str(attack)) or {}).get(field)


def _of(attack: AttackId, field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: attack_value(row, attack, field)


def _robust(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: (row.get("robust_accuracy") or {}).get(field)


def _robust_interval(which: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: (row.get("robust_accuracy") or {}).get(f"{which}_interval")


def _gradient(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: (row.get("gradients") or {}).get(field)


def _soft(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: (row.get("soft_labels") or {}).get(field)


PCT: dict[str, Any] = {"scale": 100.0}
SUCCESS_CI, ACCURACY_CI = "success_interval", "accuracy_interval"

COLUMNS: list[Column] = [
    Column("temperature", "T", lambda r: r["temperature"], "g"),
    Column("test_accuracy", "accuracy %", lambda r: r["test_accuracy"], ".2f", **PCT,
           interval=lambda r: r.get("test_accuracy_interval")),
    Column("accuracy_variation_pp", "Δ pp", lambda r: r["accuracy_variation_pp"], "+.2f"),
    Column("teacher_accuracy", "teacher acc. %", lambda r: r["teacher_accuracy"], ".2f", **PCT),
    Column("soft_label_mean_max_probability", "soft labels at T: mean max-p", _soft("mean_max_probability"),
           ".4f"),
    Column("soft_label_mean_entropy", "entropy (nats)", _soft("mean_entropy"), ".3f"),
    Column("mean_max_logit", "deployed mean max logit", lambda r: r["mean_max_logit"]),
    Column("mean_max_probability", "deployed mean max-p", lambda r: r["mean_max_probability"], ".6f"),
    Column("saturated_fraction", "p_max = 1", lambda r: r["saturated_fraction"], ".0f", suffix="%", **PCT),
    Column("jsma_probs_success_rate", "JSMA on F %", _of(A.JSMA_F, SUCCESS), **PCT,
           interval=_of(A.JSMA_F, SUCCESS_CI)),
    Column("jsma_probs_mean_l0_percent", "JSMA on F mean L0 %", _of(A.JSMA_F, "mean_l0_percent"),
           ".2f"),
    Column("rho_adv_percent", "rho_adv %", _of(A.JSMA_F, "rho_adv_percent"), ".2f",
           interval=_of(A.JSMA_F, "rho_adv_interval")),
    Column("rho_adv_censored_samples", "censored", _of(A.JSMA_F, "samples_without_success"), ".0f"),
    Column("jsma_samples", "JSMA images", _of(A.JSMA_F, "samples"), ".0f"),
    Column("gradient_median_log10", "median log10 \\|dF/dx\\|", lambda r: r["gradients"]["median_log10"]),
    Column("gradient_mean_log10", "mean log10 \\|dF/dx\\|", _gradient("mean_log10"), ".2f",
           interval=_gradient("log10_interval")),
    Column("gradient_mean", "mean \\|dF/dx\\| (float32)", _gradient("mean"), ".2e",
           interval=_gradient("amplitude_interval")),
    Column("gradient_float32_zero_fraction", "float32 \\|dF/dx\\| = 0",
           lambda r: r["gradients"]["zero_fraction"], ".1f", suffix="%", **PCT, interval=_gradient("zero")),
    Column("jsma_logits_success_rate", "JSMA on Z %", _of(A.JSMA_Z, SUCCESS), **PCT,
           interval=_of(A.JSMA_Z, SUCCESS_CI)),
    Column("jsma_temperature_success_rate", "JSMA on softmax(Z/T) %", _of(A.JSMA_ZT, SUCCESS),
           **PCT, interval=_of(A.JSMA_ZT, SUCCESS_CI)),
    Column("pgd_temperature_accuracy", "PGD L∞ CE on Z/T: acc %", _of(A.PGD_CE_ZT, ACCURACY),
           **PCT, interval=_of(A.PGD_CE_ZT, ACCURACY_CI)),
    Column("pgd_plain_accuracy", "PGD L∞ CE on F: acc %", _of(A.PGD_CE_F, ACCURACY), **PCT,
           interval=_of(A.PGD_CE_F, ACCURACY_CI)),
    Column("pgd_margin_accuracy", "PGD L∞ margin: acc %", _of(A.PGD_MARGIN, ACCURACY), **PCT,
           interval=_of(A.PGD_MARGIN, ACCURACY_CI)),
    Column("cw_l2_success_rate", "C&W L2 success %", _of(A.CW_L2, SUCCESS), **PCT,
           interval=_of(A.CW_L2, SUCCESS_CI)),
    Column("cw_l2_mean", "C&W mean L2", _of(A.CW_L2, "mean_l2"), ".2f",
           interval=_of(A.CW_L2, "mean_l2_interval")),
    Column("transfer_success_rate", "transfer success %", _of(A.TRANSFER, SUCCESS), **PCT,
           interval=_of(A.TRANSFER, SUCCESS_CI)),
    Column("robust_accuracy", "robust acc. %", _robust("unconditional"), **PCT,
           interval=_robust_interval("unconditional")),
    Column("robust_accuracy_conditional", "on clean-correct %", _robust("conditional"), **PCT,
           interval=_robust_interval("conditional")),
]  # fmt: skip

BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}


def csv_keys(column: Column) -> list[str]:
    """The ``results.csv`` fields of ``column``: its key, and its interval's when it has one."""
    return [column.key, *((f"{column.key}_{b}" for b in ("low", "high", "n")) if column.interval else ())]


def csv_values(column: Column, row: dict[str, Any]) -> dict[str, Any]:
    """``column``'s fields of ``row`` for ``results.csv`` (as stored, fractions as fractions)."""
    values = [column.get(row), *(column.bounds(row) if column.interval else ())]
    return dict(zip(csv_keys(column), values, strict=True))


def columns(*keys: str) -> list[Column]:
    """The columns named ``keys``, in that order."""
    return [BY_KEY[k] for k in keys]
