"""predict.zip from run folders (exact members, ER folds, format checks) and the hidden-set model package."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from superb_fixtures import make_checkpoint

from learn2diss.cli import main as cli
from learn2diss.downstream_runs.submit import (
    SubmissionError,
    build_model_package,
    build_predict_zip,
    check_predict_zip,
)
from learn2diss.downstream_runs.tasks import TASKS

FILES = {
    "pr": ("test-hyp.ark", "19-198-0000 HH AH0 L OW1\n19-198-0001 S P IY1 CH\n"),
    "asr": ("test-clean-noLM-hyp.ark", "19-198-0000 HELLO WORLD\n19-198-0001 \n"),
    "ks": ("test_predict.txt", "yes-a_nohash_0.wav yes\nno-b_nohash_0.wav _unknown_\n"),
    "ic": ("test_predict.csv", "utt1,activate,lights,kitchen\nutt2,increase,volume,none\n"),
    "sf": ("test-hyp.ark", "snips1 B-city PARIS E-city\n"),
    "sid": ("test_predict.txt", "id10001-vidT-00001 id10001\n"),
    "asv": ("test_predict.txt", "id10001-vidT-00001_id10001-vidT-00002 0.83\nid10001-vidT-00001_id10002-vidT-00002 0.12\n"),
}


def make_run(folder: Path, name: str, text: str, task: str, dev: float) -> None:
    """A finished run folder: its prediction file and the result file the runner writes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    metric = TASKS[task].metrics[0].name
    (folder / "learn2diss_result.json").write_text(json.dumps({"test": {metric: dev}, "dev": {metric: dev},
                                                               "checkpoint": str(folder / "dev-best.ckpt")}))


def make_runs(runs: Path, er_folds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> None:
    for task, (name, text) in FILES.items():
        make_run(runs / task / "lr0.0001", name, text, task, 0.5)
    make_run(runs / "ks" / "lr0.01", "test_predict.txt", "other-run.wav yes\n", "ks", 0.9)  # better dev acc: chosen
    for n in er_folds:
        make_run(runs / "er" / "lr0.0001" / f"fold{n}", f"test_fold{n}_predict.txt", f"Ses0{n}F_x neu\n", "er", 0.6)


def test_predict_zip_has_exactly_the_expected_members(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no results/superb.csv here: the best dev score chooses
    make_runs(tmp_path / "runs")
    assert cli(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    with zipfile.ZipFile(tmp_path / "out" / "predict.zip") as archive:
        names = sorted(archive.namelist())
        assert names == sorted([
            "predict/pr_public/predict.ark", "predict/asr_public/predict.ark", "predict/ks_public/predict.txt",
            "predict/ic_public/predict.csv", "predict/sf_public/predict.ark", "predict/sid_public/predict.txt",
            "predict/sv_public/predict.txt", *(f"predict/er_fold{n}_public/predict.txt" for n in range(1, 6))])
        assert archive.read("predict/ks_public/predict.txt").decode() == "other-run.wav yes\n"  # best dev lr
        assert archive.read("predict/er_fold3_public/predict.txt").decode() == "Ses03F_x neu\n"
        assert archive.read("predict/sv_public/predict.txt").decode() == FILES["asv"][1]


def test_tasks_without_predictions_are_listed_and_the_rest_packaged(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_runs(tmp_path / "runs", er_folds=(1, 2, 4, 5))
    (tmp_path / "runs" / "sid" / "lr0.0001" / "test_predict.txt").unlink()
    written = build_predict_zip(tmp_path / "runs", tmp_path / "out")
    assert set(written.missing) == {"er", "sid"}
    assert re.search(r"missing ER fold3 prediction file .*fold3/test_fold3_predict.txt", written.missing["er"])
    assert written.members == check_predict_zip(written.path)
    assert not any("er_fold" in name or "sid" in name for name in written.members) and len(written.members) == 6
    assert cli(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "missing er: missing ER fold3" in printed and "missing sid: " in printed and "missing: sid, er)" in printed
    (tmp_path / "runs" / "empty").mkdir()
    with pytest.raises(SubmissionError, match="no task has predictions under .*empty: no runs under"):
        build_predict_zip(tmp_path / "runs" / "empty", tmp_path / "out2")


def test_predict_zip_check_against_the_public_set_format(tmp_path) -> None:
    def zip_with(members: dict[str, str]) -> Path:
        path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in members.items():
                archive.writestr(name, text)
        return path

    good = {"predict/pr_public/predict.ark": FILES["pr"][1], "predict/ic_public/predict.csv": FILES["ic"][1]}
    assert check_predict_zip(zip_with(good)) == sorted(good)
    with pytest.raises(SubmissionError, match="not public-set members: predict/asv_public/predict.txt"):
        check_predict_zip(zip_with({**good, "predict/asv_public/predict.txt": FILES["asv"][1]}))
    with pytest.raises(SubmissionError, match="ER needs all five folds"):
        check_predict_zip(zip_with({**good, "predict/er_fold1_public/predict.txt": "a neu\n"}))
    with pytest.raises(SubmissionError, match="ic_public/predict.csv: expected 'file_id,action,object,location'"):
        check_predict_zip(zip_with({"predict/ic_public/predict.csv": "utt1 activate lights kitchen\n"}))
    with pytest.raises(SubmissionError, match="ks_public/predict.txt:1: expected '<file> <label>'"):
        check_predict_zip(zip_with({"predict/ks_public/predict.txt": "a.wav yes no\n"}))


def test_malformed_prediction_is_refused(tmp_path) -> None:
    make_runs(tmp_path / "runs")
    (tmp_path / "runs" / "asv" / "lr0.0001" / "test_predict.txt").write_text("pair1 nan\n")
    with pytest.raises(SubmissionError, match=r"asv/lr0.0001/test_predict.txt:1: expected '<pair> <finite score>'"):
        build_predict_zip(tmp_path / "runs", tmp_path / "out")
    (tmp_path / "runs" / "asv" / "lr0.0001" / "test_predict.txt").write_text("pair1 0.3\npair1 0.4\n")
    with pytest.raises(SubmissionError, match="'pair1' is listed twice"):
        build_predict_zip(tmp_path / "runs", tmp_path / "out")


def test_subset_of_tasks(tmp_path) -> None:
    make_runs(tmp_path / "runs")
    target = build_predict_zip(tmp_path / "runs", tmp_path / "out", [TASKS["asv"], TASKS["sid"]]).path
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == ["predict/sid_public/predict.txt", "predict/sv_public/predict.txt"]


def test_hidden_set_model_package_loads(tmp_path) -> None:
    checkpoint = make_checkpoint(tmp_path / "tiny")
    package = build_model_package(checkpoint, tmp_path / "out")
    assert {p.name for p in package.iterdir()} == {"checkpoint", "expert.py", "hubconf.py", "requirements.txt",
                                                   "README.md"}
    assert (package / "requirements.txt").read_text().startswith("learn2diss==")
    spec = importlib.util.spec_from_file_location("package_expert", package / "expert.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop("package_expert", None)
    spec.loader.exec_module(module)
    expert = module.UpstreamExpert()  # the checkpoint inside the package, no -k
    with torch.no_grad():
        features = expert([torch.randn(4000)])
    assert len(features["hidden_states"]) == 4 and len(features["utt_hidden_states"]) == 6
