"""s3prl smoke runs on CPU: ASV (utterance layers) and KS (frame layers) on tiny generated datasets,
trained through run_downstream.py / learn2diss superb run, evaluated, and collected into the results CSV."""

from __future__ import annotations

import re

import pytest
from superb_fixtures import make_checkpoint, make_speech_commands, make_voxceleb1, run_downstream

from learn2diss.cli import main as cli
from learn2diss.eval.results import read_rows
from learn2diss.eval.tables import render_tables

SMOKE = "config.runner.total_steps=2,,config.runner.log_step=1,,config.runner.gradient_accumulate_steps=1"
SMOKE_ASV = (f"{SMOKE},,config.runner.save_step=2,,config.downstream_expert.datarc.train_batch_size=2,,"
             "config.downstream_expert.datarc.num_workers=0")
SMOKE_KS = (f"{SMOKE},,config.runner.save_step=2,,config.runner.eval_step=2,,"
            "config.downstream_expert.datarc.batch_size=4,,config.downstream_expert.datarc.num_workers=0")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN2DISS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("LEARN2DISS_S3PRL_JOBS", "1")  # ASV's VAD pass in-process: no 12 worker processes


def test_asv_smoke_run_gives_an_eer_in_the_results(tmp_path, cache) -> None:
    checkpoint = make_checkpoint(tmp_path / "tiny")
    data = tmp_path / "data"
    make_voxceleb1(data / "VoxCeleb1")
    runs, results = tmp_path / "runs", tmp_path / "results" / "superb.csv"
    expdir = runs / "asv" / "lr0.0001"
    trained = run_downstream(["-m", "train", "-u", "learn2diss_local", "-k", str(checkpoint), "-d", "asv",
                              "-p", str(expdir), "--data-root", str(data), "-o", SMOKE_ASV], cwd=tmp_path)
    assert "The selected feature asv's downsample rate is 80" in trained.stderr  # utterance layers, stride 80
    assert (expdir / "states-2.ckpt").exists()

    # the runner finds the finished training, scores the checkpoints on the trials, keeps the best EER
    args = ["superb", "run", "--upstream", "learn2diss_local", "-k", str(checkpoint), "--tasks", "asv",
            "--lrs", "1e-4", "--data-root", str(data), "--out", str(runs), "--results", str(results.parent),
            "--model-name", "tiny"]
    assert cli(args) == 0
    assert not (expdir / "learn2diss_train.log").exists()  # training was not relaunched
    eers = [float(re.search(r"sv-voxceleb1/test-EER: (\S+)", (expdir / f"states-{n}" / "learn2diss_evaluate.log")
                            .read_text())[1]) for n in (2,)]
    (row,) = read_rows(results)
    assert (row.eval, row.model, row.condition, row.metric, row.features) == ("superb", "tiny", "utt/ASV", "eer", "asv")
    assert row.value == pytest.approx(100 * min(eers)) and 0 <= row.value <= 100
    assert (expdir / "test_predict.txt").read_text().count("\n") == 6  # one score per trial
    render_tables(results.parent, tmp_path / "tables", ["2"])  # Table 2 shows it beside the paper's rows
    table = (tmp_path / "tables" / "table2.csv").read_text()
    assert "L2D-W12" in table and f"{row.value:.2f}" in table

    # a second run skips everything that is done
    stamp = (expdir / "learn2diss_result.json").stat().st_mtime_ns
    assert cli(args) == 0
    assert (expdir / "learn2diss_result.json").stat().st_mtime_ns == stamp


def test_ks_smoke_run_reads_frame_layers(tmp_path, cache) -> None:
    checkpoint = make_checkpoint(tmp_path / "tiny")
    data = make_speech_commands(tmp_path / "data")
    runs, results = tmp_path / "runs", tmp_path / "superb.csv"
    assert cli(["superb", "run", "--upstream", "learn2diss_local", "-k", str(checkpoint), "--tasks", "ks",
                "--lrs", "1e-3", "--data-root", str(data), "--out", str(runs), "--results", str(results.parent),
                *[a for o in SMOKE_KS.split(",,") for a in ("--set", o)], "--model-name", "tiny"]) == 0
    expdir = runs / "ks" / "lr0.001"
    assert "The selected feature ks's downsample rate is 80" in (expdir / "learn2diss_train.log").read_text()
    printed = re.search(r"^test acc: (\S+)$", (expdir / "learn2diss_evaluate_test.log").read_text(), re.MULTILINE)
    (row,) = read_rows(results)
    assert (row.condition, row.metric, row.features) == ("frame/KS", "acc", "ks")
    assert row.value == pytest.approx(100 * float(printed[1]))
    assert len((expdir / "test_predict.txt").read_text().splitlines()) == 12  # one line per test file
