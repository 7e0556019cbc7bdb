"""All eight SUPERB tasks through `learn2diss superb run --smoke` on tiny generated datasets in the published layouts.

Every task trains and evaluates through the launcher of run_downstream.py and its metric lands in the
results CSV (KS and ASV also run in test_superb_runs.py). A failing task in the middle of a grid does not
stop the others. The full eight-task grid with the submission is the slow test.
"""

from __future__ import annotations

import math
import shutil
import zipfile

import pytest
from superb_fixtures import (
    make_checkpoint,
    make_fluent_commands,
    make_iemocap,
    make_superb_data,
    make_voxceleb1,
)

from learn2diss.cli import main as cli
from learn2diss.downstream_runs.runner import RunError
from learn2diss.downstream_runs.tasks import TASKS
from learn2diss.eval.results import read_rows

# one tenth of the smoke steps is enough for tiny datasets and keeps every s3prl run short
FAST = "config.runner.total_steps=4,,config.runner.eval_step=4,,config.runner.save_step=4"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("superb_tasks")
    return make_checkpoint(root / "tiny"), make_superb_data(root / "data")


@pytest.fixture(autouse=True)
def environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN2DISS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("LEARN2DISS_S3PRL_JOBS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def sets(options: str) -> list[str]:
    """``--set`` arguments for each option of an s3prl ``-o`` string."""
    return [arg for option in options.split(",,") for arg in ("--set", option)]


def superb_run(checkpoint, data, tmp_path, tasks: str, *extra: str) -> list[str]:
    return ["superb", "run", "--upstream", "learn2diss_local", "-k", str(checkpoint), "--tasks", tasks, "--smoke",
            "--data-root", str(data), "--out", str(tmp_path / "runs"), "--results", str(tmp_path),
            "--model-name", "tiny", *extra]


def check_rows(tmp_path, tasks: list[str]) -> dict[str, dict[str, float]]:
    """Every metric of every task is in the CSV with a finite value; returns task -> metric -> value."""
    rows = read_rows(tmp_path / "superb.csv")
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        task = next(t for t in TASKS.values() if row.condition.split("/")[1].split("-")[0] == t.title)
        found.setdefault(task.name, {})[row.metric] = row.value
        assert row.status in ("", "last-checkpoint"), (task.name, row.details)
        assert math.isfinite(row.value) and row.value >= 0, (task.name, row.value)
    assert {task: set(found.get(task, {})) for task in tasks} == {
        task: {metric.name for metric in TASKS[task].metrics} for task in tasks}
    return found


def test_frame_tasks_pr_asr_sf_ic(setup, tmp_path, capsys) -> None:
    checkpoint, data = setup
    assert cli(superb_run(checkpoint, data, tmp_path, "pr,asr,sf,ic", *sets(FAST))) == 0
    check_rows(tmp_path, ["pr", "asr", "sf", "ic"])
    printed = capsys.readouterr().out
    assert "4 tasks: " in printed and "0 failed" in printed
    for task in ("pr", "asr", "sf", "ic"):
        (lr,) = (tmp_path / "runs" / task).iterdir()
        assert f"The selected feature {task}'s downsample rate is 80" in (lr / "learn2diss_train.log").read_text()
    # 4 steps tag no slot yet: no dev-best.ckpt (s3prl wants slot-type F1 > 0), the last checkpoint is scored
    assert not any((tmp_path / "runs" / "sf").glob("*/dev-best.ckpt"))
    sf_rows = [row for row in read_rows(tmp_path / "superb.csv") if row.condition.startswith("frame/SF")]
    assert all(row.status == "last-checkpoint" and "slot-type F1 > 0" in row.details for row in sf_rows)
    assert cli(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "submission"),
                "--results", str(tmp_path)]) == 0
    with zipfile.ZipFile(tmp_path / "submission" / "predict.zip") as archive:
        assert sorted(archive.namelist()) == ["predict/asr_public/predict.ark", "predict/ic_public/predict.csv",
                                              "predict/pr_public/predict.ark", "predict/sf_public/predict.ark"]
    assert "missing er: no runs under" in capsys.readouterr().out


def test_failing_task_in_the_middle_does_not_stop_sid_and_er(setup, tmp_path, capsys) -> None:
    checkpoint, _ = setup
    data = tmp_path / "data"
    make_voxceleb1(data / "VoxCeleb1")
    make_iemocap(data / "IEMOCAP_full_release")
    fsc = make_fluent_commands(data / "fluent_speech_commands_dataset")
    missing = next((fsc / "wavs" / "speakers" / "spkD").glob("*.wav"))
    missing.unlink()
    assert cli(superb_run(checkpoint, data, tmp_path, "sid,ic,er", *sets(FAST))) == 1
    found = check_rows_except(tmp_path, failed="ic", ok=["sid", "er"])
    assert set(found) == {"sid", "er"}
    printed = capsys.readouterr().out
    assert "| ic | failed |" in printed and str(missing) in printed and "1 failed" in printed
    assert (tmp_path / "runs" / "er" / "lr0.01" / "fold1" / "test_fold1_predict.txt").exists()  # smoke: lr, fold1
    # --fail-fast stops at the first failure, with the error itself
    shutil.rmtree(tmp_path / "runs" / "ic")
    with pytest.raises(RunError, match="missing audio listed in test_data.csv"):
        cli(superb_run(checkpoint, data, tmp_path, "ic,sid", "--fail-fast", *sets(FAST)))


def check_rows_except(tmp_path, failed: str, ok: list[str]) -> dict[str, dict[str, float]]:
    """The ``failed`` task's rows say failed (NaN, reason in details); the others are finished numbers."""
    rows = read_rows(tmp_path / "superb.csv")
    bad = [row for row in rows if row.condition.endswith("/" + TASKS[failed].title)]
    assert bad and all(row.status == "failed" and math.isnan(row.value) for row in bad)
    assert "missing audio listed in test_data.csv" in bad[0].details
    good = [row for row in rows if row not in bad]
    found: dict[str, dict[str, float]] = {}
    for row in good:
        task = next(name for name in ok if row.condition.endswith("/" + TASKS[name].title))
        assert row.status in ("", "last-checkpoint") and math.isfinite(row.value)
        found.setdefault(task, {})[row.metric] = row.value
    return found


@pytest.mark.slow
def test_the_eight_task_smoke_grid(setup, tmp_path, capsys) -> None:
    """The documented smoke grid: every task writes its dev-best checkpoint (status ok), then the submission."""
    checkpoint, data = setup
    assert cli(superb_run(checkpoint, data, tmp_path, "all")) == 0
    found = check_rows(tmp_path, list(TASKS))
    assert set(found) == set(TASKS)
    assert {row.status for row in read_rows(tmp_path / "superb.csv")} == {""}
    for task in TASKS.values():
        if task.dev_split:  # ASV has no dev set
            assert next((tmp_path / "runs" / task.name).rglob(task.best_checkpoint), None), task.name
    summary = capsys.readouterr().out
    assert "8 tasks: 8 ok, 0 last-checkpoint, 0 failed" in summary
    assert cli(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "submission"),
                "--results", str(tmp_path)]) == 0
    with zipfile.ZipFile(tmp_path / "submission" / "predict.zip") as archive:
        assert len(archive.namelist()) == 7  # ER is left out: a smoke run has fold1 only
    assert "missing er: missing ER fold2" in capsys.readouterr().out
    print(summary)  # the task x metric x wall time table (pytest -rP shows it)
