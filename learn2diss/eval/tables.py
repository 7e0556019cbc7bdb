"""Regenerate the paper's Tables 2-8 from a results folder, with the paper's numbers beside the user's.

Every table is a :class:`TableSpec` in the registry :data:`TABLES`: its paper columns and a collector
that turns result rows (:mod:`learn2diss.eval.results`) into cells. The paper's numbers are
transcribed once in ``paper_results.csv`` next to this file (Tables 2-8; ``marker`` ``*`` = the paper's
"generated with the public checkpoint", ``-`` = not reported). Each table is written as Markdown,
LaTeX and CSV: for every model a ``paper`` row, a ``yours`` row with a provenance line (checkpoint
hash, config, date, datasets) and a ``Δ`` row (yours - paper). A dataset that is not the paper's
(e.g. the demo corpus) gets its own extra columns.

Other modules add tables with :func:`register_table` and groups of tables with :data:`GROUPS`
(``learn2diss tables superb`` renders the ``superb`` group).

Example::

    from learn2diss.eval.tables import render_tables
    render_tables("results", "tables", ["3", "8"])
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from learn2diss.errors import InputError
from learn2diss.eval.results import ResultRow, read_results_dir
from learn2diss.io import write_text

PAPER_FILE = "paper_results.csv"


@dataclass(frozen=True)
class Cell:
    """One user number placed in a table: row ``(model, variant)``, column, value and the rows behind it."""

    model: str
    variant: str
    column: str
    value: float
    rows: tuple[ResultRow, ...]


@dataclass(frozen=True)
class TableSpec:
    """A paper table: id (``"3"``), caption, paper columns in order, and the collector of user cells."""

    id: str
    caption: str
    columns: tuple[str, ...]
    collect: Callable[[Sequence[ResultRow]], list[Cell]]


TABLES: dict[str, TableSpec] = {}
GROUPS: dict[str, tuple[str, ...]] = {}


def register_table(spec: TableSpec) -> TableSpec:
    """Add (or replace) a table in the registry."""
    TABLES[spec.id] = spec
    return spec


def model_key(name: str) -> str:
    """Names compare case- and punctuation-insensitively: ``L2D_H12`` = ``l2d-h12``, ``wavLM`` = ``WavLM``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class PaperValue:
    table: str
    model: str
    variant: str
    column: str
    value: float | None
    marker: str
    label: str


def paper_values() -> list[PaperValue]:
    """The paper's numbers from the packaged ``paper_results.csv``."""
    text = resources.files("learn2diss.eval").joinpath(PAPER_FILE).read_text(encoding="utf-8")
    out = []
    for record in csv.DictReader(io.StringIO(text)):
        value = float(record["value"]) if record["value"] else None
        out.append(PaperValue(record["table"], record["model"], record["variant"], record["column"], value, record["marker"],
                              record["paper_label"]))
    return out


def provenance(rows: Iterable[ResultRow]) -> str:
    """``ckpt <hash> · config <name> · <dates> · <datasets>`` over the rows behind one table row: each distinct
    value once (a model evaluated on several tasks and days has one checkpoint and config, several datasets)."""
    rows = list(rows)

    def joined(values: Iterable[str]) -> str:
        return ",".join(sorted({v for v in values if v})) or "-"

    dates = sorted({r.date for r in rows if r.date})
    when = "-" if not dates else dates[0] if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"
    return (f"ckpt {joined(r.checkpoint_hash for r in rows)} · config {joined(r.config for r in rows)} · "
            f"{when} · {joined(r.dataset for r in rows)}")


def _split_cells(rows: Sequence[ResultRow], column_of: Callable[[ResultRow], str | None]) -> list[Cell]:
    """Cells from rows mapped one to one onto columns; several rows in a cell (clean+other) are averaged."""
    grouped: dict[tuple[str, str, str], list[ResultRow]] = {}
    for row in rows:
        column = column_of(row)
        if column is not None:
            grouped.setdefault((row.model, row.variant, column), []).append(row)
    return [Cell(model, variant, column, sum(r.value for r in group) / len(group), tuple(group))
            for (model, variant, column), group in grouped.items()]


def _librispeech_column(prefix: str, dataset: str, split: str) -> str:
    """``within/clean`` for ``dev-clean`` when ``split`` is dev; ``within/<dataset>`` for any other set."""
    for kind in ("clean", "other"):
        if dataset == f"{split}-{kind}":
            return f"{prefix}/{kind}"
    return f"{prefix}/{dataset}"


def _abx_cells(rows: Sequence[ResultRow], split: str = "dev") -> list[Cell]:
    def column(row: ResultRow) -> str | None:
        if row.eval != "abx" or row.metric != "abx_error":
            return None
        other_split = "test" if split == "dev" else "dev"
        if row.dataset.startswith(f"{other_split}-"):
            return None
        return _librispeech_column(row.condition, row.dataset, split)

    return _split_cells(rows, column)


def is_dev_set(dataset: str) -> bool:
    """``dev-clean``, ``dev-other``, ``dev`` (the demo corpus), ``val``: a development set (Table 7, not 4)."""
    return re.match(r"(dev|val|valid|validation)([-_].*)?$", dataset) is not None


def _ctc_cells(rows: Sequence[ResultRow], split: str) -> list[Cell]:
    """Table 4 takes the test sets (and any set that is not a development set), Table 7 the development sets."""
    def column(row: ResultRow) -> str | None:
        if row.eval != "ctc" or row.metric != "wer" or is_dev_set(row.dataset) != (split == "dev"):
            return None
        return _librispeech_column(row.condition, row.dataset, split)

    return _split_cells(rows, column)


def _purity_cells(rows: Sequence[ResultRow]) -> list[Cell]:
    """Table 8 averages test-clean and test-other; other sets get their own column."""
    def column(row: ResultRow) -> str | None:
        if row.eval != "purity" or row.metric not in ("phone_purity", "speaker_purity"):
            return None
        return row.metric if row.dataset in ("test-clean", "test-other") else f"{row.metric}/{row.dataset}"

    return _split_cells(rows, column)


def _superb_cells(columns: Sequence[str]) -> Callable[[Sequence[ResultRow]], list[Cell]]:
    """SUPERB rows: ``eval=superb``, ``condition`` = ``frame/<TASK>`` or ``utt/<TASK>`` (the layers read);
    a ``failed`` grid cell (no number) is left out."""
    def collect(rows: Sequence[ResultRow]) -> list[Cell]:
        return _split_cells(rows, lambda r: r.condition if r.eval == "superb" and r.condition in columns
                            and r.status != "failed" else None)

    return collect


def _probe_cells(rows: Sequence[ResultRow]) -> list[Cell]:
    def column(row: ResultRow) -> str | None:
        if row.eval != "probes":
            return None
        name = f"{row.condition}/{row.metric.removesuffix('_acc')}"
        return name if row.dataset == _probe_dataset(rows, row) else f"{name}/{row.dataset}"

    return _split_cells(rows, column)


def _probe_dataset(rows: Sequence[ResultRow], row: ResultRow) -> str:
    """The first dataset a model was probed on names the main columns; others get extra columns."""
    return next(r.dataset for r in rows if r.eval == "probes" and r.model == row.model)


SUPERB_2 = ("frame/PR", "frame/ASR", "frame/KS", "frame/IC", "frame/SF-F1", "frame/SF-CER", "utt/SID", "utt/ASV",
            "utt/ER")
SUPERB_5 = ("frame/PR", "frame/ASR", "frame/SID", "frame/ER", "utt/PR", "utt/ASR", "utt/SID", "utt/ER")
CTC_COLUMNS = ("1h/clean", "1h/other", "10h/clean", "10h/other", "100h/clean", "100h/other")

register_table(TableSpec("2", "SUPERB: PER/WER/EER lower is better, Acc/F1 higher (frame layers for semantic, "
                              "utterance layers for non-semantic tasks)", SUPERB_2, _superb_cells(SUPERB_2)))
register_table(TableSpec("3", "ZeroSpeech 2021 ABX error rate (%), last frame-encoder layer",
                         ("within/clean", "within/other", "across/clean", "across/other"), _abx_cells))
register_table(TableSpec("4", "WER (%) on LibriSpeech test, CTC fine-tuning + 4-gram", CTC_COLUMNS,
                         lambda rows: _ctc_cells(rows, "test")))
register_table(TableSpec("5", "Effect of the MI loss (variant no-mi) on SUPERB, frame vs utterance layers",
                         SUPERB_5, _superb_cells(SUPERB_5)))
register_table(TableSpec("6", "Effect of layer aggregation in the MI term (variant final-layers) on SUPERB",
                         SUPERB_5, _superb_cells(SUPERB_5)))
register_table(TableSpec("7", "WER (%) on LibriSpeech dev, CTC fine-tuning + 4-gram", CTC_COLUMNS,
                         lambda rows: _ctc_cells(rows, "dev")))
register_table(TableSpec("8", "Phone purity and speaker purity (%), averaged over test-clean and test-other",
                         ("phone_purity", "speaker_purity"), _purity_cells))
register_table(TableSpec("probes", "Linear probes, accuracy (%): Table 5 style disentanglement matrix (no paper "
                                   "numbers: the paper used full SUPERB tasks)",
                         ("frame/speaker_id", "frame/phone", "utterance/speaker_id", "utterance/phone"), _probe_cells))
GROUPS.update({"all": ("2", "3", "4", "5", "6", "7", "8", "probes"), "superb": ("2", "5", "6")})


@dataclass(frozen=True)
class TableRow:
    model: str
    variant: str
    source: str  # paper | yours | Δ
    values: dict[str, str]
    note: str


def _fmt(value: float | None, marker: str = "") -> str:
    if value is None:
        return "-" if marker == "-" else ""
    return f"{value:.2f}" + ("*" if marker == "*" else "")


def build_table(spec: TableSpec, rows: Sequence[ResultRow]) -> tuple[list[str], list[TableRow]]:
    """Columns (paper columns, then extra user columns) and rows: paper / yours / Δ per model."""
    paper = [p for p in paper_values() if p.table == spec.id]
    cells = spec.collect(rows)
    prefixes = list(dict.fromkeys(c.split("/")[0] for c in spec.columns))

    def extra_order(column: str) -> tuple[int, str]:  # extra columns follow the paper's column order
        prefix = column.split("/")[0]
        return (prefixes.index(prefix) if prefix in prefixes else len(prefixes), column)

    columns = list(spec.columns) + sorted({c.column for c in cells} - set(spec.columns), key=extra_order)
    order: list[tuple[str, str]] = []
    names: dict[tuple[str, str], str] = {}
    for entry in paper + [PaperValue(spec.id, c.model, c.variant, c.column, c.value, "", c.model) for c in cells]:
        key = (model_key(entry.model), entry.variant)
        if key not in names:
            names[key] = entry.model
            order.append(key)
    out: list[TableRow] = []
    for key in order:
        model, variant = names[key], key[1]
        theirs = {p.column: p for p in paper if (model_key(p.model), p.variant) == key}
        ours = {c.column: c for c in cells if (model_key(c.model), c.variant) == key}
        if theirs:
            label = next(iter(theirs.values())).label
            out.append(TableRow(model, variant, "paper", {c: _fmt(p.value, p.marker) for c, p in theirs.items()},
                                label))
        if ours:
            note = provenance(r for c in ours.values() for r in c.rows)
            out.append(TableRow(model, variant, "yours", {c: _fmt(v.value) for c, v in ours.items()}, note))
            diffs = {c: f"{ours[c].value - paper_value:+.2f}" for c in ours
                     if c in theirs and (paper_value := theirs[c].value) is not None}
            if diffs:
                out.append(TableRow(model, variant, "Δ", diffs, ""))
    return columns, out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, first column left-aligned and the others right-aligned: the one table formatter of
    the reports (the paper tables, the demo's summary, the study's).

    >>> print(markdown_table(["model", "acc"], [["a", "1.0"]]), end="")
    | model | acc |
    |:---|---:|
    | a | 1.0 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_interval(mean: float, low: float, high: float, digits: int) -> str:
    """``mean ± half-width`` of an interval with ``digits`` decimals; the mean alone when the interval is NaN (one
    value). The one interval formatter of the reports.

    >>> format_interval(2.0, 1.5, 2.5, 1), format_interval(2.0, float("nan"), float("nan"), 1)
    ('2.0 ± 0.5', '2.0')
    """
    if low != low:  # NaN: fewer than two values
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def _row_label(row: TableRow) -> str:
    return row.model + (f" ({row.variant})" if row.variant else "")


def to_markdown(spec: TableSpec, columns: Sequence[str], rows: Sequence[TableRow]) -> str:
    lines = [f"### Table {spec.id}: {spec.caption}", "",
             "| Model | Source | " + " | ".join(columns) + " | Provenance |",
             "|---|---|" + "---:|" * len(columns) + "---|"]
    for row in rows:
        cells = [row.values.get(c, "") for c in columns]
        lines.append(f"| {_row_label(row)} | {row.source} | " + " | ".join(cells) + f" | {row.note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return re.sub(r"([_&%#$])", r"\\\1", text).replace("Δ", r"$\Delta$").replace("·", r"$\cdot$")


def to_latex(spec: TableSpec, columns: Sequence[str], rows: Sequence[TableRow]) -> str:
    header = " & ".join(["Model", "Source", *(_latex_escape(c) for c in columns), "Provenance"])
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{Table {spec.id}: {_latex_escape(spec.caption)}}}",
             r"\begin{tabular}{ll" + "r" * len(columns) + "l}", r"\toprule", header + r" \\", r"\midrule"]
    for row in rows:
        cells = [_latex_escape(row.values.get(c, "")) for c in columns]
        lines.append(" & ".join([_latex_escape(_row_label(row)), _latex_escape(row.source), *cells,
                                 r"\scriptsize " + _latex_escape(row.note)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(spec: TableSpec, columns: Sequence[str], rows: Sequence[TableRow]) -> str:
    """Long form: one line per model x column with the paper's value, the user's, the difference and provenance."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "model", "variant", "column", "paper", "yours", "diff", "provenance"])
    by_model: dict[tuple[str, str], dict[str, TableRow]] = {}
    for row in rows:
        by_model.setdefault((row.model, row.variant), {})[row.source] = row
    for (model, variant), sources in by_model.items():
        for column in columns:
            values = {s: r.values.get(column, "") for s, r in sources.items()}
            if any(values.values()):
                note = sources["yours"].note if "yours" in sources else ""
                writer.writerow([spec.id, model, variant, column, values.get("paper", ""), values.get("yours", ""),
                                 values.get("Δ", ""), note])
    return buffer.getvalue()


def resolve_names(names: Sequence[str]) -> list[str]:
    """Table ids from ids and group names (``all``, ``superb``); an unknown name is an error listing the valid ones."""
    out: list[str] = []
    for name in names or ["all"]:
        ids = GROUPS.get(name, (name,))
        for table_id in ids:
            if table_id not in TABLES:
                raise InputError(f"unknown table {name!r}; choose from {sorted(TABLES)} or groups {sorted(GROUPS)}")
            if table_id not in out:
                out.append(table_id)
    return out


def render_tables(results: str | os.PathLike[str], out: str | os.PathLike[str], names: Sequence[str] = ()) -> list[Path]:
    """Write ``table<ID>.md``, ``.tex`` and ``.csv`` per table and ``tables.md`` with all of them; returns the paths."""
    rows = read_results_dir(results)
    out = Path(out)
    written: list[Path] = []
    markdown = []
    for table_id in resolve_names(names):
        spec = TABLES[table_id]
        columns, table_rows = build_table(spec, rows)
        for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
            path = out / f"table{table_id}{suffix}"
            text = render(spec, columns, table_rows)
            write_text(path, text)
            written.append(path)
            if suffix == ".md":
                markdown.append(text)
    index = out / "tables.md"
    write_text(index, "\n".join(markdown))
    return [*written, index]
