"""The demo's report: the Table 5 directions as differences with 95 % intervals, every metric per model, time.

Everything is read back from the records the stages wrote (``OUT/cells/<setting>/seed<S>.json`` of the
Learn2Diss runs, ``OUT/parent.json``, ``OUT/asr.json``), so the report shows exactly what was measured.
``summary.md`` holds

* the Table 5 directions: each quantity for lambda = 0 and lambda > 0 (mean ± half-width of the 95 % t
  interval over the seeds), the difference lambda > 0 minus lambda = 0 with its 95 % Welch interval, the
  paper's direction and what the run shows: "yes" or "no" when the interval excludes 0, "not resolved"
  when it contains 0 (no tolerance, no tuning);
* one row per model with every metric, including the phone error rate of the linear CTC head;
* the wall and CPU seconds of every stage.

``rows.csv`` holds every number with its provenance, ``summary.csv`` the means and intervals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from learn2diss.demo.plan import GRID, MI, NO_MI, PARENT
from learn2diss.eval.results import write_atomic
from learn2diss.eval.tables import format_interval, markdown_table
from learn2diss.study.summary import LABELS, difference_interval, raw_rows, summarise, t_interval

PER = "asr/linear-ctc/per"
METRICS: tuple[str, ...] = (
    "probes/frame/speaker_id_acc", "probes/utterance/speaker_id_acc", "probes/frame/phone_acc",
    "probes/utterance/phone_acc", "abx/within/abx_error", "abx/across/abx_error", PER,
    "purity/frame:last/pnmi", "purity/utt:embedding/speaker_purity",
)
HEADERS = {**LABELS, PER: "PER, frame enc. ↓"}
SETTING_LABELS = {PARENT: "parent (HuBERT it. 1)", NO_MI: "L2D, λ = 0 (no MI)", MI: "L2D, λ > 0 (MI)"}

# Table 5 of the paper (and the ABX of Table 3), read as directions of lambda > 0 minus lambda = 0.
DIRECTIONS: tuple[tuple[str, str, str], ...] = (
    ("probes/frame/speaker_id_acc", "lower with MI", "<"),
    ("probes/utterance/speaker_id_acc", "not lower with MI", ">="),
    ("probes/utterance/phone_acc", "lower with MI", "<"),
    (PER, "lower with MI", "<"),
    ("abx/across/abx_error", "no worse with MI", "<="),
)


def direction_holds(delta: float, sign: str) -> bool:
    """Whether ``delta`` (lambda > 0 minus lambda = 0) has the expected sign."""
    return {"<": delta < 0, "<=": delta <= 0, ">=": delta >= 0}[sign]


def verdict(delta: float, low: float, high: float, sign: str) -> str:
    """``yes``/``no`` when the 95 % interval of the difference excludes 0, else ``not resolved``."""
    if math.isnan(low) or low <= 0 <= high:
        return "not resolved"
    return "yes" if direction_holds(delta, sign) else "no"


def _mean_ci(values: Sequence[float]) -> str:
    return format_interval(*t_interval(values), digits=1) if values else "–"


def values(rows: pd.DataFrame, setting: str, metric: str) -> list[float]:
    """The per-seed values of ``metric`` for ``setting`` (test speakers)."""
    return rows[(rows["setting"] == setting) & (rows["metric"] == metric)]["value"].tolist()


def directions_table(rows: pd.DataFrame) -> tuple[str, list[str]]:
    """The Table 5 directions with intervals, and the verdict of each."""
    body, verdicts = [], []
    for metric, expected, sign in DIRECTIONS:
        no_mi, mi = values(rows, NO_MI, metric), values(rows, MI, metric)
        if not no_mi or not mi:
            body.append([HEADERS[metric], _mean_ci(no_mi), _mean_ci(mi), "–", expected, "not measured"])
            verdicts.append("not measured")
            continue
        delta, low, high = difference_interval(mi, no_mi)
        shown = verdict(delta, low, high, sign)
        verdicts.append(shown)
        interval = f"[{low:+.1f}, {high:+.1f}]" if not math.isnan(low) else "–"
        body.append([HEADERS[metric], _mean_ci(no_mi), _mean_ci(mi), f"{delta:+.1f}", interval, expected, shown])
    header = ["quantity (%)", "λ = 0", "λ > 0", "Δ", "95 % interval of Δ", "paper (Table 5)", "seen here"]
    return markdown_table(header, body), verdicts


def metrics_table(rows: pd.DataFrame) -> str:
    """One row per model (parent, then each lambda over its seeds): mean ± half-width of the 95 % interval."""
    body = []
    for setting in (PARENT, *(s.name for s in GRID.settings)):
        n = rows.loc[rows["setting"] == setting, "seed"].nunique()
        body.append([SETTING_LABELS[setting], str(n), *(_mean_ci(values(rows, setting, m)) for m in METRICS)])
    return markdown_table(["model", "seeds", *(HEADERS[m] for m in METRICS)], body)


def per_note(rows: pd.DataFrame) -> str:
    """A line under the metrics table when a PER is above 100 %: what such a number is."""
    per = rows.loc[rows["metric"] == PER, "value"]
    if per.empty or per.max() <= 100:
        return ""
    return ("PER above 100 %: the head emits more phones than the references hold (insertions count as errors), "
            "as an untrained or barely trained head does; it is no measure of the features. An all-blank head "
            "scores 100 %.\n")


def timing_table(times: Sequence) -> str:
    """Wall and CPU seconds of each stage (``times``: :class:`~learn2diss.demo.pipeline.StageTime`)."""
    body = [[t.title + (" (cached)" if t.skipped else ""), f"{t.wall:.0f}", f"{t.cpu:.0f}"] for t in times]
    body.append(["**total**", f"**{sum(t.wall for t in times):.0f}**", f"**{sum(t.cpu for t in times):.0f}**"])
    return markdown_table(["stage", "wall (s)", "CPU (s)"], body)


def read_records(out: Path, cell_files: Sequence[Path]) -> list[dict]:
    """The parent's record and the cells', each with its phone-recognition row from ``asr.json`` added."""
    asr = json.loads((out / "asr.json").read_text()) if (out / "asr.json").is_file() else {}
    records = []
    for path in [out / "parent.json", *cell_files]:
        record = json.loads(path.read_text())
        name = PARENT if record["setting"] == PARENT else f"{record['setting']}-seed{record['seed']}"
        if name in asr:
            record["rows"] = [*record["rows"], {"split": "test", "eval": "asr", "condition": "linear-ctc",
                                                "metric": "per", "value": asr[name]["per"],
                                                "features": "frame:last", "details": asr[name]["details"]}]
        records.append(record)
    return records


def write_report(out: Path, records: Sequence[dict], times: Sequence, context: str, figures: Sequence[Path]) -> str:
    """Write ``out/rows.csv``, ``out/summary.csv``, ``out/timings.md`` and ``out/summary.md``; returns the summary."""
    rows = raw_rows(records)
    write_atomic(out / "rows.csv", rows.to_csv(index=False))
    write_atomic(out / "summary.csv", summarise(rows).to_csv(index=False))
    timing = timing_table(times)
    write_atomic(out / "timings.md", "# Demo stages: wall and CPU time\n\n" + timing)
    directions, verdicts = directions_table(rows)
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("yes", "no", "not resolved") if v in verdicts)
    summary = "\n".join([
        "# Learn2Diss demo: summary", "", context, "",
        f"## Table 5 directions: λ > 0 minus λ = 0 ({counts})", "", directions,
        "Mean ± half-width of the 95 % Student t interval over the seeds; Δ's interval is Welch's (unequal "
        "variances). \"not resolved\": the interval contains 0, so this run cannot tell the direction. "
        "Speaker-ID and phone accuracies are linear probes, PER is a linear CTC head on frozen `frame:last` "
        "(SUPERB's phone recognition set-up), ABX is ZeroSpeech 2021 triphone ABX of `frame:last`; all on the "
        "unseen test speakers. ↑/↓: higher/lower is better for a disentangled model.", "",
        "## All metrics (%, unseen test speakers)", "", metrics_table(rows), per_note(rows),
        "## Time per stage", "", timing,
        "## Figures", "", *(f"- [{p.name}]({p.relative_to(out)})" for p in figures), "",
        "Every number with its provenance (setting, seed, overrides, checkpoint and weight hash, git commit): "
        "`rows.csv`; means and intervals: `summary.csv`.", "",
    ])
    write_atomic(out / "summary.md", summary)
    return summary
