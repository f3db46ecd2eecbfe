"""The reproduction report: ``results.json``, ``results.csv``, figures, ``report.md``, ``report.html``.

Every table and figure puts the paper's published values (``paper_values.json``, with
the citation; unconfirmed values are marked) beside ours, and the section "Is defensive
distillation robust?" sets the paper's attack beside the adaptive ones. When a data set
was swept with several seeds, every number is the mean ± sample standard deviation over
the seeds (error bars in the figures; each seed's gradient histogram is drawn), and the
CSV has a row per seed plus ``mean`` and ``std`` rows.

Modules, one job each:

- :mod:`.data`: reading a data set's rows, its seeds, the stored masking verdicts and the
  paper's values (``paper_values.json``); number formatting shared by the others.
- :mod:`.phrases`: how a number is worded: a rate with its interval and n, whether two
  intervals separate, a count never rounded to 100 %.
- :mod:`.tables`: the markdown tables (summary, temperature, robustness).
- :mod:`.figures`: the matplotlib figures, as PNG bytes.
- :mod:`.findings`: one data set's statements in prose (the attacks, training, the positive
  control, the ablations); the masking verdict is read from the rows
  (:func:`defdistill.evaluation.checks.assess` decides it), never decided here.
- :mod:`.soft_labels`: what the teachers' entropy curves establish about T.
- :mod:`.trend`: Kendall's exact trend test across temperatures (the teachers' entropy).
- :mod:`.comparison`: MNIST beside the other data sets, claimed only where established.
- :mod:`.conclusion`: the answer to "is defensive distillation robust?".
- :mod:`.disclosures`: the sampling note and the differences from the paper.
- :mod:`.teachers`: ``teachers.md``, the first phase's reading of the soft labels.
- :mod:`.render`: the files: ``results.json``, ``results.csv``, figures, ``report.md``
  and the self-contained ``report.html``.
"""

from defdistill.experiments.report.data import DATASET_TITLES, masking_detected, paper_values
from defdistill.experiments.report.figures import collect_examples, examples_grid, make_figures
from defdistill.experiments.report.findings import findings
from defdistill.experiments.report.render import (
    CSV_COLUMNS,
    render_html,
    render_markdown,
    write_csv,
    write_report,
)
from defdistill.experiments.report.tables import robustness_table, summary_table, temperature_table

__all__ = [
    "CSV_COLUMNS",
    "DATASET_TITLES",
    "collect_examples",
    "examples_grid",
    "findings",
    "make_figures",
    "masking_detected",
    "paper_values",
    "render_html",
    "render_markdown",
    "robustness_table",
    "summary_table",
    "temperature_table",
    "write_csv",
    "write_report",
]
