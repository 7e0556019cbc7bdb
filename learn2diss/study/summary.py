"""The study's outputs: raw rows with provenance, mean ± 95 % t-interval per setting, split and metric, and a
figure of each metric against the grid's x (lambda by default).

* ``rows.csv``: one row per cell x split x metric, with the setting, seed, overrides, checkpoint (path and
  weight hash), git commit and config;
* ``summary.csv``: setting, x, split, metric, n, mean, sd, ci_low, ci_high (Student t, 95 %);
* ``summary.md``: one table per split (validation speakers first: choose there; test speakers: report);
* ``metrics_vs_x.png``: one panel per metric, mean and interval against x, one line per group of settings
  that differ only in x, solid for validation and dashed for test speakers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from learn2diss.eval.tables import format_interval, markdown_table
from learn2diss.io import save_figure

# Metric key (eval/condition/metric) -> label; arrows: what a disentangled frame encoder g / utterance encoder h
# should do (Table 5 of the paper) or what is better (ABX, PNMI).
LABELS: dict[str, str] = {
    "probes/frame/speaker_id_acc": "speaker-ID, frame enc. ↓",
    "probes/utterance/speaker_id_acc": "speaker-ID, utt. enc. ↑",
    "probes/frame/phone_acc": "phone, frame enc. ↑",
    "probes/utterance/phone_acc": "phone, utt. enc. ↓",
    "abx/within/abx_error": "ABX within ↓",
    "abx/across/abx_error": "ABX across ↓",
    "asr/linear-ctc/per": "PER, frame enc. ↓",
    "purity/frame:last/pnmi": "PNMI ↑",
    "purity/frame:last/phone_purity": "phone purity ↑",
    "purity/utt:embedding/speaker_purity": "speaker purity ↑",
    "probes/frame/speaker_frame_acc": "speaker per frame, frame enc. ↓",
    "probes/frame/speaker_frame_bits": "speaker CE per frame (bits), frame enc. ↑",
    "verification/frame/eer": "speaker EER, frame enc. ↑",
    "verification/utterance/eer": "speaker EER, utt. enc. ↓",
    "probes/frame/speaker_id_bits": "speaker-ID CE (bits), frame enc. ↑",
    "probes/utterance/speaker_id_bits": "speaker-ID CE (bits), utt. enc. ↓",
    "probes/frame/phone_bits": "phone CE (bits), frame enc. ↓",
    "probes/utterance/phone_bits": "phone CE (bits), utt. enc. ↑",
    "variance/frame:last/frame_var_unmasked": "var. g, inference pass",
    "variance/frame:last/frame_var_masked_pos": "var. g, masked pass, masked pos.",
    "variance/frame:last/frame_var_unmasked_pos": "var. g, masked pass, unmasked pos.",
}
SPLIT_NAMES = {"val": "validation speakers", "test": "test speakers"}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper) of the Student t interval of the mean; the bounds are NaN for a single value."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def paired_difference(a: Mapping[int, float], b: Mapping[int, float],
                      level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, lower, upper, n) of the per-seed differences ``a[s] - b[s]`` over the seeds both have: the paired
    Student t interval (n - 1 degrees of freedom; NaN bounds below 2 pairs).

    Two settings run with the same seed share the initialisation, batch order and masks, so most of the
    seed-to-seed variation cancels in the difference and the interval is far narrower than that of a
    difference of two independent means.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return math.nan, math.nan, math.nan, 0
    mean, low, high = t_interval([a[s] - b[s] for s in seeds], level)
    return mean, low, high, len(seeds)


def raw_rows(cells: Sequence[dict]) -> pd.DataFrame:
    """One row per cell x split x metric, with the cell's provenance."""
    records = []
    for cell in cells:
        for row in cell["rows"]:
            records.append({
                "setting": cell["setting"], "seed": cell["seed"], "x": cell["x"], "split": row["split"],
                "metric": f"{row['eval']}/{row['condition']}/{row['metric']}", "value": row["value"],
                "features": row["features"], "details": row["details"], "overrides": " ".join(cell["overrides"]),
                "checkpoint": cell["checkpoint"], "checkpoint_hash": cell["checkpoint_hash"],
                "git_commit": cell["git_commit"], "version": cell.get("version", ""), "config": cell["config"],
                "shared": cell["shared"],
                "corpus": cell["corpus"],
            })
    return pd.DataFrame.from_records(records)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % t-interval per (setting, x, split, metric), in the order of first appearance."""
    out = []
    for (setting, split, metric), group in rows.groupby(["setting", "split", "metric"], sort=False):
        mean, low, high = t_interval(group["value"].tolist())
        out.append({"setting": setting, "x": group["x"].iloc[0], "split": split, "metric": metric, "n": len(group),
                    "mean": mean, "sd": float(group["value"].std(ddof=1)) if len(group) > 1 else math.nan,
                    "ci_low": low, "ci_high": high})
    return pd.DataFrame.from_records(out)


def _digits(value: float) -> int:
    return 3 if abs(value) < 10 else 1


def _cell(mean: float, low: float, high: float) -> str:
    return format_interval(mean, low, high, _digits(mean))


def markdown_tables(summary: pd.DataFrame, settings: Sequence[str]) -> str:
    """One Markdown table per split: settings x metrics, ``mean ± half-width`` of the 95 % t-interval."""
    metrics = [m for m in LABELS if m in set(summary["metric"])]
    metrics += [m for m in dict.fromkeys(summary["metric"]) if m not in LABELS]
    parts = []
    for split in [s for s in ("val", "test") if s in set(summary["split"])] + sorted(
            set(summary["split"]) - {"val", "test"}):
        these = summary[summary["split"] == split]
        header = ["setting", "n", *(LABELS.get(m, m) for m in metrics)]
        body = []
        for setting in settings:
            rows = these[these["setting"] == setting].set_index("metric")
            if rows.empty:
                continue
            values = [_cell(rows.at[m, "mean"], rows.at[m, "ci_low"], rows.at[m, "ci_high"]) if m in rows.index
                      else "–" for m in metrics]
            body.append([setting, str(int(rows["n"].max())), *values])
        parts.append(f"### {SPLIT_NAMES.get(split, split)} (`{split}`)\n\n" + markdown_table(header, body))
    return "\n".join(parts)


def paired_differences(rows: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Every other setting minus ``baseline`` with the same seed, per split and metric (:func:`paired_difference`)."""
    out = []
    for (setting, split, metric), group in rows.groupby(["setting", "split", "metric"], sort=False):
        if setting == baseline:
            continue
        base = rows[(rows["setting"] == baseline) & (rows["split"] == split) & (rows["metric"] == metric)]
        mean, low, high, n = paired_difference(dict(zip(group["seed"], group["value"], strict=True)),
                                               dict(zip(base["seed"], base["value"], strict=True)))
        if n:
            out.append({"setting": setting, "split": split, "metric": metric, "n": n, "mean": mean,
                        "ci_low": low, "ci_high": high})
    return pd.DataFrame.from_records(out, columns=["setting", "split", "metric", "n", "mean", "ci_low", "ci_high"])


def markdown_difference_tables(diffs: pd.DataFrame, settings: Sequence[str], baseline: str) -> str:
    """One table per split of the paired differences to ``baseline``: ``mean ± half-width``, ``*`` where the
    interval excludes 0 (without it the difference is not resolved)."""
    metrics = [m for m in LABELS if m in set(diffs["metric"])]
    metrics += [m for m in dict.fromkeys(diffs["metric"]) if m not in LABELS]
    parts = []
    for split in [s for s in ("val", "test") if s in set(diffs["split"])] + sorted(
            set(diffs["split"]) - {"val", "test"}):
        these = diffs[diffs["split"] == split]
        header = [f"setting − {baseline} (same seed)", "n", *(LABELS.get(m, m) for m in metrics)]
        body = []
        for setting in settings:
            rows = these[these["setting"] == setting].set_index("metric")
            if rows.empty:
                continue
            cells = []
            for m in metrics:
                if m not in rows.index:
                    cells.append("–")
                    continue
                mean, low, high = rows.at[m, "mean"], rows.at[m, "ci_low"], rows.at[m, "ci_high"]
                shown = format_interval(mean, low, high, _digits(mean))
                cells.append(("+" if mean >= 0 else "") + shown + ("*" if low > 0 or high < 0 else ""))
            body.append([setting, str(int(rows["n"].max())), *cells])
        parts.append(f"### {SPLIT_NAMES.get(split, split)} (`{split}`), paired differences\n\n"
                     + markdown_table(header, body))
    return "\n".join(parts)


def _numeric(values: Sequence[object]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_metrics(summary: pd.DataFrame, groups: dict[str, str], x_key: str, path: Path) -> Path:
    """``metrics_vs_x.png``: each metric against x (``groups``: setting -> line label), with 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in LABELS if m in set(summary["metric"])]
    metrics += [m for m in dict.fromkeys(summary["metric"]) if m not in LABELS]
    xs = list(dict.fromkeys(summary["x"]))
    numeric = _numeric(xs)
    position = (lambda v: v) if numeric else (lambda v: xs.index(v))
    columns = min(4, len(metrics))
    rows_n = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.4 * rows_n), squeeze=False)
    colours = plt.get_cmap("tab10")
    labels = list(dict.fromkeys(groups.values()))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for split, style in (("val", "-"), ("test", "--")):
            for i, label in enumerate(labels):
                sel = summary[(summary["metric"] == metric) & (summary["split"] == split)
                              & summary["setting"].map(lambda s, label=label: groups.get(s) == label)]
                if sel.empty:
                    continue
                sel = sel.assign(pos=sel["x"].map(position)).sort_values("pos")
                err = np.vstack([sel["mean"] - sel["ci_low"], sel["ci_high"] - sel["mean"]])
                ax.errorbar(sel["pos"], sel["mean"], yerr=np.nan_to_num(err), fmt="o" + style, capsize=3,
                            color=colours(i % 10), label=f"{label}, {split}")
        if numeric and min(xs) >= 0 and max(xs) > 0:
            positive = [v for v in xs if v > 0]
            ax.set_xscale("symlog", linthresh=min(positive))
        if not numeric:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_title(LABELS.get(metric, metric), fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8)
    fig.suptitle("mean and 95 % t-interval over seeds; solid: validation speakers, dashed: test speakers",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    save_figure(path, fig, dpi=100)
    plt.close(fig)
    return path
