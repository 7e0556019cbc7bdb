"""The demo's report: per-evaluation Markdown tables, the Table 5 style summary and the timing table.

Everything is read back from the result CSVs the evaluation commands wrote (``results/demo/*.csv``), so
the report shows exactly what was measured. ``summary.md`` holds

* the Table 5 directions: each quantity for lambda = 0 and lambda > 0, its difference, the paper's
  expected direction and whether this run shows it (a plain comparison: no tolerance, no tuning);
* one row per model with every metric (probes, ABX, purity, CTC WER);
* the wall and CPU seconds of every stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from learn2diss.demo.plan import L2D_MI, L2D_NO_MI, MODELS, PARENT
from learn2diss.eval.results import ResultRow, read_results_dir, write_atomic

LABELS = {PARENT: "parent (HuBERT it. 1)", L2D_NO_MI: "L2D, λ = 0 (no MI)", L2D_MI: "L2D, λ > 0 (MI)"}


@dataclass(frozen=True)
class Column:
    """One metric of the summary: which result row, its header, and whether lower is better."""

    key: str
    header: str
    eval: str
    condition: str
    metric: str


COLUMNS: tuple[Column, ...] = (
    Column("spk_frame", "speaker-ID, frame enc. ↓", "probes", "frame", "speaker_id_acc"),
    Column("spk_utt", "speaker-ID, utt. enc. ↑", "probes", "utterance", "speaker_id_acc"),
    Column("phone_frame", "phone, frame enc. ↑", "probes", "frame", "phone_acc"),
    Column("phone_utt", "phone, utt. enc. ↓", "probes", "utterance", "phone_acc"),
    Column("abx_within", "ABX within ↓", "abx", "within", "abx_error"),
    Column("abx_across", "ABX across ↓", "abx", "across", "abx_error"),
    Column("phone_purity", "phone purity ↑", "purity", "frame:last", "phone_purity"),
    Column("pnmi", "PNMI ↑", "purity", "frame:last", "pnmi"),
    Column("speaker_purity", "speaker purity ↑", "purity", "utt:embedding", "speaker_purity"),
    Column("wer", "WER, 4-gram ↓", "ctc", "demo", "wer"),
    Column("wer_viterbi", "WER, no LM ↓", "ctc", "demo", "wer_viterbi"),
)

# Table 5 of the paper, read as directions: (column, what MI should do to it, sign of lambda>0 minus lambda=0).
DIRECTIONS: tuple[tuple[str, str, str], ...] = (
    ("spk_frame", "lower with MI", "<"),
    ("spk_utt", "not lower with MI", ">="),
    ("phone_utt", "lower with MI", "<"),
    ("abx_across", "no worse with MI", "<="),
)


def lookup(rows: Sequence[ResultRow], model: str, column: Column) -> float | None:
    """The value of ``column`` for ``model`` (None when the evaluation did not run)."""
    found = [r for r in rows if r.model == model and r.eval == column.eval and r.condition == column.condition
             and r.metric == column.metric]
    return found[-1].value if found else None


def _fmt(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (first column left-aligned, the others right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def metrics_table(rows: Sequence[ResultRow]) -> str:
    """One row per model, one column per metric of :data:`COLUMNS` (percent)."""
    body = [[LABELS[m], *(_fmt(lookup(rows, m, c)) for c in COLUMNS)] for m, _ in MODELS]
    return markdown_table(["model", *(c.header for c in COLUMNS)], body)


def direction_holds(delta: float, sign: str) -> bool:
    """Whether ``delta`` (lambda > 0 minus lambda = 0) has the expected sign."""
    return {"<": delta < 0, "<=": delta <= 0, ">=": delta >= 0}[sign]


def directions_table(rows: Sequence[ResultRow]) -> tuple[str, list[bool | None]]:
    """The Table 5 directions, and for each whether it holds (None when a value is missing)."""
    columns = {c.key: c for c in COLUMNS}
    body, held = [], []
    for key, expected, sign in DIRECTIONS:
        column = columns[key]
        no_mi, mi = lookup(rows, L2D_NO_MI, column), lookup(rows, L2D_MI, column)
        if no_mi is None or mi is None:
            body.append([column.header, _fmt(no_mi), _fmt(mi), "–", expected, "not measured"])
            held.append(None)
            continue
        ok = direction_holds(mi - no_mi, sign)
        held.append(ok)
        body.append([column.header, _fmt(no_mi), _fmt(mi), f"{mi - no_mi:+.1f}", expected, "yes" if ok else "no"])
    header = ["quantity (%)", "λ = 0", "λ > 0", "Δ", "paper (Table 5)", "seen here"]
    return markdown_table(header, body), held


def eval_tables(rows: Sequence[ResultRow]) -> dict[str, str]:
    """One Markdown table per evaluation: models x (condition, metric), with features and details."""
    out = {}
    for name in sorted({r.eval for r in rows}):
        these = [r for r in rows if r.eval == name]
        keys = list(dict.fromkeys((r.condition, r.metric) for r in these))
        body = []
        for model, _ in MODELS:
            values = [next((r.value for r in these if r.model == model and (r.condition, r.metric) == k), None)
                      for k in keys]
            body.append([LABELS.get(model, model), *(_fmt(v) for v in values)])
        notes = sorted({f"- `{r.condition}` `{r.metric}`: features `{r.features}`; {r.details}" for r in these})
        out[name] = (f"# {name}\n\n" + markdown_table(["model", *(f"{c} {m}" for c, m in keys)], body)
                     + "\n" + "\n".join(notes) + "\n")
    return out


def timing_table(times: Sequence) -> str:
    """Wall and CPU seconds of each stage (``times``: :class:`~learn2diss.demo.pipeline.StageTime`)."""
    body = [[t.title + (" (cached)" if t.skipped else ""), f"{t.wall:.0f}", f"{t.cpu:.0f}"] for t in times]
    body.append(["**total**", f"**{sum(t.wall for t in times):.0f}**", f"**{sum(t.cpu for t in times):.0f}**"])
    return markdown_table(["stage", "wall (s)", "CPU (s)"], body)


def write_report(out: Path, times: Sequence, context: str, figures: Sequence[Path]) -> str:
    """Write ``out/tables/<eval>.md``, ``out/timings.md`` and ``out/summary.md``; returns the summary text."""
    rows = read_results_dir(out)
    for name, text in eval_tables(rows).items():
        write_atomic(out / "tables" / f"{name}.md", text)
    timing = timing_table(times)
    write_atomic(out / "timings.md", "# Demo stages: wall and CPU time\n\n" + timing)
    directions, held = directions_table(rows)
    seen = sum(1 for h in held if h)
    summary = "\n".join([
        "# Learn2Diss demo: summary", "", context, "",
        f"## Table 5 directions: λ = 0 against λ > 0 ({seen} of {len(held)} seen)", "", directions,
        "Speaker-ID and phone accuracies are linear probes (`learn2diss eval probes`), ABX is ZeroSpeech 2021 "
        "triphone ABX of `frame:last` on the unseen test speakers (`learn2diss eval abx`); ↑/↓: higher/lower is "
        "better for a disentangled model.", "",
        "## All metrics (%, unseen test speakers)", "", metrics_table(rows),
        "## Time per stage", "", timing,
        "## Figures", "", *(f"- [{p.name}]({p.relative_to(out)})" for p in figures), "",
        "Per-evaluation tables: `tables/*.md`; raw rows: `*.csv`.", "",
    ])
    write_atomic(out / "summary.md", summary)
    return summary
