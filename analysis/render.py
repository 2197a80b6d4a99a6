"""Rendering of a table frame (rows = labels) to Markdown and booktabs LaTeX.

Numbers are scaled (fractions to %, :data:`PCT`) and rounded; a missing value is an en dash;
a cell flagged in ``partial`` gets a ``*``; ``bold_best`` bolds the cells of a mask
(:func:`analysis.significance.significant_best`) or, on request, each column's plain maximum.
"""

from __future__ import annotations

import math

import pandas as pd

PCT = 100.0


def _fmt(v, digits: int, scale: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, str):
        return v
    return f"{scale * v:.{digits}f}"


def _best_mask(df: pd.DataFrame, scale: float, digits: int) -> pd.DataFrame:
    """True where a cell equals its column's maximum as displayed (ties all bold)."""
    mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    if len(df) < 2:
        return mask
    for col in df.columns:
        s = pd.to_numeric(df[col], errors="coerce")
        if s.notna().sum() < 2:
            continue
        shown = (s * scale).round(digits)
        mask[col] = shown == shown.max()
    return mask


def _bold_best(cells: dict, df: pd.DataFrame, digits, scale, fmt: str, bold: bool | pd.DataFrame) -> None:
    """Wrap the cells to bold in ``fmt`` (e.g. ``**{}**``), in place: where the mask ``bold`` is
    true, or (``bold=True``) each column's plain maximum as displayed (no statistics)."""
    for col in df.columns:
        if isinstance(bold, pd.DataFrame):
            best = bold[col].reindex(df.index).fillna(False).astype(bool).tolist() if col in bold else [False] * len(df)
        else:
            sc = scale.get(col, 1.0) if isinstance(scale, dict) else scale
            dg = digits.get(col, 1) if isinstance(digits, dict) else digits
            best = _best_mask(df[[col]], sc, dg)[col].tolist()
        cells[col] = [fmt.format(c) if b else c for c, b in zip(cells[col], best, strict=True)]


def _cells(df: pd.DataFrame, digits, scale, partial: pd.DataFrame | None):
    out = {}
    for col in df.columns:
        dg = digits.get(col, 1) if isinstance(digits, dict) else digits
        sc = scale.get(col, 1.0) if isinstance(scale, dict) else scale
        vals = []
        for lab, v in df[col].items():
            s = _fmt(v, dg, sc)
            if partial is not None and col in partial and bool(partial.at[lab, col]):
                s += "*"
            vals.append(s)
        out[col] = vals
    return out


def to_markdown(
    df: pd.DataFrame,
    digits: int | dict = 1,
    scale: float | dict = PCT,
    bold_best: bool | pd.DataFrame = False,
    partial: pd.DataFrame | None = None,
    first_header: str = "Run",
) -> str:
    """A GitHub-flavoured Markdown table (numbers scaled and rounded). ``bold_best``: a mask of
    the cells to bold (:func:`analysis.significance.significant_best`), True for each column's
    plain maximum (no statistics behind it), False for none."""
    cells = _cells(df, digits, scale, partial)
    if bold_best is not False:
        _bold_best(cells, df, digits, scale, "**{}**", bold_best)
    header = "| " + " | ".join([first_header] + [str(c) for c in df.columns]) + " |"
    sep = "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|"
    lines = [header, sep]
    for i, lab in enumerate(df.index):
        lines.append("| " + " | ".join([str(lab)] + [cells[c][i] for c in df.columns]) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    rep = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\^{}",
    }
    return "".join(rep.get(ch, ch) for ch in str(s))


def to_latex(
    df: pd.DataFrame,
    digits: int | dict = 1,
    scale: float | dict = PCT,
    bold_best: bool | pd.DataFrame = False,
    caption: str | None = None,
    label: str | None = None,
    partial: pd.DataFrame | None = None,
    first_header: str = "Model",
) -> str:
    """A booktabs LaTeX table (``\\usepackage{booktabs}``); ``bold_best`` as in
    :func:`to_markdown`."""
    cells = _cells(df, digits, scale, partial)
    cells = {c: [v.replace("–", "--").replace("*", "$^*$") for v in vals] for c, vals in cells.items()}
    if bold_best is not False:
        _bold_best(cells, df, digits, scale, "\\textbf{{{}}}", bold_best)
    lines = ["\\begin{table}[t]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{_tex_escape(caption)}}}")
    if label:
        lines.append(f"\\label{{{label}}}")
    lines.append("\\begin{tabular}{l" + "r" * len(df.columns) + "}")
    lines.append("\\toprule")
    lines.append(" & ".join([first_header] + [_tex_escape(c) for c in df.columns]) + " \\\\")
    lines.append("\\midrule")
    for i, lab in enumerate(df.index):
        lines.append(" & ".join([_tex_escape(lab)] + [cells[c][i] for c in df.columns]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
