"""`learn2diss study`: the grid file, the t intervals, and a reduced study end to end (table, figure, resume)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from test_synth import require_synthesisers

import learn2diss
from learn2diss.cli import main
from learn2diss.pretrain.config import read_config
from learn2diss.schema import ConfigError
from learn2diss.study.grid import StudyError, check_grid, packaged_grids, parse_grid, read_grid
from learn2diss.study.summary import paired_difference, t_interval

# 10 speakers: 2 test, 2 validation, 6 train; a few steps of each stage (plumbing, not the method)
CORPUS = ["--speakers", "10", "--utts", "6", "--shared", "2", "--test-speakers", "2", "--val-speakers", "2"]
QUICK = ["joint.steps=3", "joint.frame_optimizer.warmup_steps=1", "utt_simclr.steps=2", "train.log_every=1",
         "frame_targets.fit_max_frames=2000", "utt_targets.cluster_counts=[2,3,4]"]


def test_grid_overrides_are_typed_and_errors_are_named():
    grid = parse_grid({"settings": {"a": {"joint.club.weight": 1.0e-3, "joint.steps": 5}, "b": None},
                       "x": "joint.club.weight"}, "g.yaml")
    a, b = grid.settings
    assert a.overrides == (("joint.club.weight", 1.0e-3), ("joint.steps", 5)) and b.overrides == ()
    assert a.value("joint.club.weight") == 1.0e-3 and b.value("joint.club.weight") is None
    assert a.without("joint.club.weight") == (("joint.steps", 5),)
    assert a.arguments() == ["joint.club.weight=0.001", "joint.steps=5"]  # text only for the command line
    for bad, message in (({"settings": {}, "x": "k"}, "at least one setting"),
                         ({"settings": {"a/b": {}}, "x": "k"}, "setting name"),
                         ({"settings": {"a": [1]}, "x": "k"}, r"settings\.a"),
                         ({"settings": {"a": {}}, "x": "k", "y": 1}, "unknown key"),
                         ({"settings": {"a": {}}}, r"missing key\(s\) x")):
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad, "g.yaml")
    config = read_config("tiny")
    check_grid(grid, config)
    for overrides, message in (({"joint.club.wieght": 1.0}, "grid setting c: .*unknown key 'joint.club.wieght'"),
                               ({"joint.steps": "many"}, "grid setting c: .*joint.steps: expected int")):
        with pytest.raises(ConfigError, match=message):
            check_grid(parse_grid({"settings": {"c": overrides}, "x": "joint.club.weight"}, "g.yaml"), config)


def test_a_packaged_grid_is_found_by_name(tmp_path):
    assert "study_club" in packaged_grids()
    by_name = read_grid("study_club")
    assert by_name == read_grid(Path(learn2diss.__file__).parent / "configs" / "grids" / "study_club.yaml")
    assert any(s.name == "lambda-0" for s in by_name.settings)
    with pytest.raises(ConfigError, match="packaged: .*study_club"):
        read_grid("no_such_grid")
    with pytest.raises(ConfigError, match="no such file"):
        read_grid(tmp_path / "study_club.yaml")  # a path is a path, never a packaged name


def test_t_interval_and_paired_difference_match_scipy():
    x = [1.0, 2.0, 4.0]
    mean, low, high = t_interval(x)
    expected = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(7 / 3) and (low, high) == pytest.approx(expected)
    assert math.isnan(t_interval([3.0])[1])
    a, b = {0: 5.0, 1: 6.0, 2: 8.0, 3: 1.0}, {0: 1.0, 1: 1.5, 2: 4.0, 5: 0.0}  # paired on the seeds both have
    delta, low, high, n = paired_difference(a, b)
    ci = stats.ttest_rel([5.0, 6.0, 8.0], [1.0, 1.5, 4.0]).confidence_interval(0.95)
    assert n == 3 and delta == pytest.approx(12.5 / 3) and (low, high) == pytest.approx((ci.low, ci.high))
    # a seed effect shared by both settings cancels: the paired interval is far narrower than the spread
    shared = {s: 10.0 * s for s in range(4)}
    delta, low, high, _ = paired_difference({s: v + 1.0 + 0.01 * s for s, v in shared.items()}, shared)
    assert 0 < low < delta < high < 1.1
    assert paired_difference({0: 1.0}, {1: 2.0})[3] == 0


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_reduced_study_writes_table_figure_rows_and_a_rerun_skips_finished_cells(tmp_path, capsys, one_thread):
    require_synthesisers()
    corpus, manifest, shared = tmp_path / "corpus", tmp_path / "manifest", tmp_path / "shared"
    assert main(["data", "synth", "--out", str(corpus), *CORPUS, "--jobs", "2"]) == 0
    assert main(["data", "manifest", "--root", str(corpus / "LibriSpeech-style"), "--subsets", "train",
                 "--out", str(manifest)]) == 0
    sets = [a for s in QUICK for a in ("--set", s)]
    for stage in ("frame-targets", "utt-simclr", "utt-targets"):
        assert main(["pretrain", stage, "--config", "demo_l2d", "--random-parent", "--data",
                     str(manifest), "--out", str(shared), "--device", "cpu", *sets]) == 0
    grid = tmp_path / "grid.yaml"
    grid.write_text("x: joint.club.weight\nsettings:\n  lambda-0: {joint.club.weight: 0.0}\n"
                    "  lambda-1e-3: {joint.club.weight: 1.0e-3}\n")
    out = tmp_path / "study"
    args = ["study", "--grid", str(grid), "--seeds", "0", "1", "--shared", str(shared), "--corpus", str(corpus),
            "--config", "demo_l2d", "--out", str(out), "--work-dir", str(tmp_path / "work"),
            "--purity-clusters", "10", "--probe-max-frames", "2000", *sets]
    assert main(args) == 0

    rows = pd.read_csv(out / "rows.csv")
    assert set(rows["setting"]) == {"lambda-0", "lambda-1e-3"} and set(rows["seed"]) == {0, 1}
    assert set(rows["split"]) == {"val", "test"} and rows["value"].notna().all()
    assert {"probes/frame/speaker_id_acc", "probes/frame/speaker_frame_acc", "probes/frame/speaker_frame_bits",
            "verification/frame/eer", "verification/utterance/eer", "probes/utterance/phone_acc",
            "abx/across/abx_error", "purity/frame:last/pnmi", "variance/frame:last/frame_var_unmasked",
            "variance/frame:last/frame_var_masked_pos"} <= set(rows["metric"])
    variances = rows[rows["metric"].str.startswith("variance/")]
    assert (variances["value"] > 0).all() and set(variances["split"]) == {"val", "test"}
    assert rows["checkpoint_hash"].str.fullmatch(r"[0-9a-f]{12}").all() and rows["git_commit"].notna().all()
    assert set(rows.loc[rows["setting"] == "lambda-1e-3", "x"]) == {1.0e-3}
    assert set(rows.loc[rows["seed"] == 1, "overrides"].str.contains("train.seed=1 data.seed=1")) == {True}
    # the two seeds trained different models
    assert rows.groupby("setting")["checkpoint_hash"].nunique().eq(2).all()

    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["n"]) == {2}
    one = summary[(summary["setting"] == "lambda-0") & (summary["split"] == "test")
                  & (summary["metric"] == "abx/within/abx_error")].iloc[0]
    values = rows[(rows["setting"] == "lambda-0") & (rows["split"] == "test")
                  & (rows["metric"] == "abx/within/abx_error")]["value"]
    assert (one["mean"], one["ci_low"], one["ci_high"]) == pytest.approx(t_interval(values.tolist()))
    text = (out / "summary.md").read_text()
    assert "### validation speakers (`val`)" in text and "### test speakers (`test`)" in text
    assert text.index("validation speakers (`val`)") < text.index("test speakers (`test`)")
    tables, differences = text.split("paired differences", 1)
    table_rows = [line for line in tables.splitlines() if line.startswith("| lambda-")]
    assert len(table_rows) == 4 and all(" ± " in line for line in table_rows)
    diff_rows = [line for line in differences.splitlines() if line.startswith("| lambda-")]
    assert len(diff_rows) == 2 and all(line.startswith("| lambda-1e-3 | 2 |") for line in diff_rows)
    diffs = pd.read_csv(out / "differences.csv")
    one = diffs[(diffs["split"] == "test") & (diffs["metric"] == "abx/across/abx_error")].iloc[0]
    pick = rows[(rows["split"] == "test") & (rows["metric"] == "abx/across/abx_error")]
    pairs = [pick[(pick["setting"] == s) & (pick["seed"] == seed)]["value"].item() for seed in (0, 1)
             for s in ("lambda-1e-3", "lambda-0")]
    assert one["mean"] == pytest.approx(((pairs[0] - pairs[1]) + (pairs[2] - pairs[3])) / 2)
    png = (out / "metrics_vs_x.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    record = json.loads((out / "cells" / "lambda-0" / "seed1.json").read_text())
    assert record["overrides"][-2:] == ["train.seed=1", "data.seed=1"]

    capsys.readouterr()
    assert main(args) == 0  # every cell is finished: skipped, the summary written again from the cells
    printed = capsys.readouterr().out
    assert "4 cells, 4 done before; running 0" in printed and "pretrain" not in printed.split("# Learn2Diss study")[0]
    assert pd.read_csv(out / "rows.csv").equals(rows)
    grid.write_text("x: joint.club.weight\nsettings:\n  lambda-0: {joint.club.weight: 0.5}\n")
    with pytest.raises(StudyError, match="other overrides"):
        main(args)
