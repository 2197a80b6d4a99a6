"""Analysis of ``dars`` runs: everything computed from run directories on disk.

The only input is the run-directory contract (``docs/run-format.md``), plus two foreign formats
read for interoperability: the *upstream* repository's (the paper authors',
github.com/yangzhch6/DARS) ``val_generations/<step>.json`` dumps and verl's
``trainer.validation_data_dir`` JSONL dumps. See ``docs/analysis.md``.

Entry points::

    python -m analysis.regenerate <sweep-or-run-dir> [...] --out <dir>   # everything, claims too
    python -m analysis.tables     <dirs> --out <dir>                     # tables only
    python -m analysis.figures    [<dirs>] --out <dir>                   # figures only
    python -m analysis.upstream   <val_generations/<step>.json>          # upstream's analysis_results.py
    python -m analysis.runs       <dirs>                                 # list what was found

Modules: :mod:`analysis.metrics` (pure numeric functions), :mod:`analysis.readers` (file
formats), :mod:`analysis.runs` (discovery), :mod:`analysis.labels` (seed groups),
:mod:`analysis.core` (the computed results, built from :mod:`analysis.checkpoints`, which
checkpoint a run is judged at, :mod:`analysis.run_metrics`, the numbers of one run, and
:mod:`analysis.pooling`, a label's runs pooled into its results),
:mod:`analysis.exclusions` (untrained and partial
runs: listed, never ranked), :mod:`analysis.paired` (paired differences between seed groups),
:mod:`analysis.significance` (bold only for a significantly best value), :mod:`analysis.claims`
(the claims table; the paper's claims are data in ``analysis/paper_claims.yaml``),
:mod:`analysis.tables` (and the console report; rendering in :mod:`analysis.render`),
:mod:`analysis.cli` (the shared options), :mod:`analysis.publish` (reports written whole or not
at all), :mod:`analysis.figures`, :mod:`analysis.analytic` and :mod:`analysis.analytic_figures`
(figures 5 and 6, every schedule of :mod:`dars.schedules`), :mod:`analysis.style`, :mod:`analysis.upstream`,
:mod:`analysis.synthetic` (fixture/benchmark run generator). The statistics of the paired
differences are :mod:`dars.stats`.
"""

from analysis.metrics import avg_per_problem, bootstrap_ci, maj_at_k, pass_at_k_matrix, summarize

__all__ = ["avg_per_problem", "bootstrap_ci", "maj_at_k", "pass_at_k_matrix", "summarize"]
