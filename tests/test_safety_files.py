"""Hostile and malformed files are one clear error naming the file: duplicated YAML keys, malformed WebDataset
shards, features with NaN or another dimension, links in a package; no leftovers after a failure."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from superb_fixtures import make_checkpoint
from test_scaleout_shards import _loader, corpus, labelled, shards  # noqa: F401 - fixtures
from test_superb_submit import make_runs

from learn2diss.cli import console
from learn2diss.errors import Learn2DissError


def _one_error(capsys, command: str) -> str:
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = re.findall(rf"learn2diss {command}: error: .*", stderr)
    assert len(lines) == 1, stderr
    return lines[0]


# ---- strict YAML: a key given twice is an error naming the file, the line and the key ------------------------


def _duplicated(path: Path, text: str, key: str) -> Path:
    """``text`` with the line of ``key`` given a second time right after it."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:") or line.startswith(f"  {key}:"))
    lines.insert(at + 1, lines[at])
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_duplicated_key_in_a_run_config_is_refused(tmp_path):
    from learn2diss.pretrain.config import config_path, load_config

    path = _duplicated(tmp_path / "my.yaml", config_path("tiny").read_text(), "seed")
    with pytest.raises(Learn2DissError, match=rf"{re.escape(str(path))}:\d+: key 'seed' given twice \(first on line \d+\)"):
        load_config(path)


def test_a_duplicated_key_in_a_ctc_config_grid_checkpoint_and_set_value_is_refused(tmp_path):
    from learn2diss.eval.ctc.config import load_ctc_config
    from learn2diss.pretrain.config import load_config
    from learn2diss.schema import find_config
    from learn2diss.study.grid import read_grid
    from learn2diss.upstream.checkpoints import load_model

    ctc = _duplicated(tmp_path / "ctc.yaml", find_config("ctc_demo", "ctc").read_text(), "max_updates")
    with pytest.raises(Learn2DissError, match=r"ctc\.yaml:\d+: key 'max_updates' given twice"):
        load_ctc_config(ctc)
    grid = tmp_path / "grid.yaml"
    grid.write_text("settings:\n  a: {joint.club.weight: 0.0}\n  a: {joint.club.weight: 1.0}\n")
    with pytest.raises(Learn2DissError, match=r"grid\.yaml:3: key 'a' given twice \(first on line 2\)"):
        read_grid(grid)
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    _duplicated(checkpoint / "config.yaml", (checkpoint / "config.yaml").read_text(), "format_version")
    with pytest.raises(Learn2DissError, match=r"ckpt/config\.yaml:2: key 'format_version' given twice"):
        load_model(checkpoint)
    with pytest.raises(Learn2DissError, match=r"--set joint.club=.*key 'weight' given twice"):
        load_config("tiny", ["joint.club={weight: 0.0, weight: 1.0}"])


def test_a_duplicated_key_in_a_run_folders_config_is_one_error_line(tmp_path, capsys):
    """`learn2diss eval` reads a checkpoint's config.yaml: one line naming it."""
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    _duplicated(checkpoint / "config.yaml", (checkpoint / "config.yaml").read_text(), "format_version")
    code = console(["eval", "abx", "--checkpoint", str(checkpoint), "--item", str(tmp_path / "x.item"), "--audio",
                    str(tmp_path)])
    line = _one_error(capsys, "eval abx")
    assert code == 2 and f"{checkpoint / 'config.yaml'}:2: key 'format_version' given twice" in line


def test_a_s3prl_config_with_a_duplicated_key_is_refused_before_s3prl_reads_it(tmp_path):
    from learn2diss.downstream_runs.launcher import s3prl_arguments

    config = tmp_path / "c.yaml"
    config.write_text("runner:\n  total_steps: 1\n  total_steps: 2\n")
    with pytest.raises(Learn2DissError, match=r"c\.yaml:3: key 'total_steps' given twice"):
        s3prl_arguments(["-m", "train", "-u", "learn2diss_local", "-d", "example", "-c", str(config), "--device", "cpu"])


# ---- malformed WebDataset shards: one error naming the shard (and member) ------------------------------------


def _first_batch(folder: Path, labelled) -> None:  # noqa: F811 - the fixture's value
    factory, _ = _loader(folder, labelled)
    next(factory((0, 0)))


def _rewrite_member(tar_path: Path, change) -> None:
    """Rewrite a shard with ``change(name, data) -> (name, data)`` applied to every member."""
    with tarfile.open(tar_path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for name, data in members:
            name, data = change(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _object_array(name: str, data: bytes) -> tuple[str, bytes]:
    if name.endswith(".frames.npy"):
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"not": "labels"}], dtype=object), allow_pickle=True)
        data = buffer.getvalue()
    return name, data


def _path_like(name: str, data: bytes) -> tuple[str, bytes]:
    return f"../outside/{name}", data


@pytest.mark.parametrize("damage", ["object array member", "path-like member", "truncated tar", "index outside",
                                    "object array rows"])
def test_a_malformed_shard_folder_is_one_error_naming_the_file(shards, labelled, tmp_path, damage):  # noqa: F811
    folder = tmp_path / "shards"
    shutil.copytree(shards, folder)
    index = json.loads((folder / "index.json").read_text())
    every = sorted(folder.glob("shard-*.tar"))
    if damage == "object array member":
        for tar in every:
            _rewrite_member(tar, _object_array)
        expected = r"shard-\d+\.tar:\d+\.frames\.npy: not a readable \.npy array: it holds Python objects"
    elif damage == "path-like member":
        for tar in every:
            _rewrite_member(tar, _path_like)
        expected = r"shard-\d+\.tar: member '\.\./outside/\d+' is not a manifest row"
    elif damage == "truncated tar":
        for tar in every:
            tar.write_bytes(tar.read_bytes()[:700])
        expected = r"shard-\d+\.tar: not a readable tar shard"
    elif damage == "index outside":
        index["shards"][0] = "../../outside.tar"
        (folder / "index.json").write_text(json.dumps(index))
        expected = r"index\.json: shard names must be shard-NNNNNN\.tar files of this folder, got '\.\./\.\./outside\.tar'"
    else:
        np.save(folder / "rows.npy", np.array([{"row": 1}] * len(np.load(folder / "rows.npy")), dtype=object),
                allow_pickle=True)
        expected = r"rows\.npy: not a readable \.npy array: it holds Python objects"
    with pytest.raises(Learn2DissError, match=expected):
        _first_batch(folder, labelled)


def test_an_error_of_a_data_worker_is_its_own_line(capsys):
    """DataLoader re-raises a worker's error with the worker's traceback in its message; the console prints the
    error's own text."""
    from torch._utils import ExceptionWrapper

    from learn2diss.cli import error_line
    from learn2diss.data.shards import ShardError

    try:
        raise ShardError("shards/shard-000001.tar: not a readable tar shard")
    except ShardError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(ShardError) as caught:
        wrapped.reraise()
    assert "Traceback" in str(caught.value)
    assert error_line(caught.value) == "shards/shard-000001.tar: not a readable tar shard"


def test_a_failed_data_shard_leaves_no_folder(corpus, tmp_path, capsys):  # noqa: F811
    manifest = tmp_path / "manifest.tsv"
    text = (corpus / "train.tsv").read_text().splitlines()
    first = text[1].split("\t")[0]
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio")
    manifest.write_text("\n".join([text[0], text[1].replace(first, str(broken)), *text[2:]]) + "\n")
    out = tmp_path / "shards"
    code = console(["data", "shard", "--data", str(manifest), "--out", str(out), "--shard-utterances", "100"])
    line = _one_error(capsys, "data shard")
    assert code == 2 and str(broken) in line
    assert not out.exists()


# ---- features: NaN, another dimension ------------------------------------------------------------------------


def _features(folder: Path, dims: dict[str, int], frames: int = 30, nan: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for utt, dim in dims.items():
        array = rng.standard_normal((frames, dim)).astype(np.float32)
        if utt == nan:
            array[3, 1] = np.nan
        np.save(folder / f"{utt}.npy", array)


def _probe_inputs(tmp_path: Path) -> tuple[list[str], Path]:
    utts = [f"{spk}-1-{n}" for spk in ("100", "200") for n in range(4)]
    alignments = tmp_path / "align.tsv"
    alignments.write_text("".join(f"{u} 0.0 0.3 AA\n{u} 0.3 0.6 B\n" for u in utts))
    return utts, alignments


@pytest.mark.parametrize("case", ["NaN", "dimension"])
def test_probe_features_with_nan_or_another_dimension_are_one_line_naming_the_file(tmp_path, capsys, case):
    utts, alignments = _probe_inputs(tmp_path)
    dims = {u: 8 for u in utts}
    if case == "dimension":
        dims[utts[5]] = 6
    _features(tmp_path / "feats", dims, nan=utts[5] if case == "NaN" else None)
    code = console(["eval", "probes", "--features-dir", str(tmp_path / "feats"), "--alignments", str(alignments),
                    "--results", str(tmp_path / "results"), "--model-name", "x"])
    line = _one_error(capsys, "eval probes")
    bad = tmp_path / "feats" / f"{utts[5]}.npy"
    reason = "features contain NaN or infinite values" if case == "NaN" else "6-dimensional features, but"
    assert code == 2 and f"{bad}: {reason}" in line


def test_abx_features_of_another_dimension_are_one_line_naming_the_file(tmp_path, capsys):
    utts = [f"{spk}-1-{n}" for spk in ("100", "200") for n in range(3)]
    item = tmp_path / "dev.item"
    rows = ["#file onset offset #phone prev-phone next-phone speaker"]
    rows += [f"{u} {0.1 * k:.2f} {0.1 * k + 0.1:.2f} {p} A B {u.split('-')[0]}" for u in utts
             for k, p in enumerate(("AA", "B", "AA"), start=1)]
    item.write_text("\n".join(rows) + "\n")
    dims = {u: 8 for u in utts}
    dims[utts[4]] = 5
    _features(tmp_path / "feats", dims)
    code = console(["eval", "abx", "--features-dir", str(tmp_path / "feats"), "--item", str(item), "--results",
                    str(tmp_path / "results"), "--model-name", "x"])
    line = _one_error(capsys, "eval abx")
    assert code == 2 and f"{tmp_path / 'feats' / (utts[4] + '.npy')}: 5-dimensional features, but" in line


def test_a_killed_results_write_leaves_no_temporary_file_after_the_next_one(tmp_path):
    from learn2diss.eval.results import ResultRow, append_rows

    (tmp_path / ".abx.csv.tmp-1234abcd").write_text("half a csv")  # what a killed `eval abx` left
    append_rows(tmp_path / "abx.csv", [ResultRow("abx", "m", "d", "within", "abx_error", 1.0)])
    assert sorted(os.listdir(tmp_path)) == [".abx.csv.lock", "abx.csv"]


# ---- packages hold only the regular files they name ---------------------------------------------------------


def test_a_symlink_in_the_checkpoint_is_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results/superb.csv here: the run with the best dev score is chosen
    make_runs(tmp_path / "runs")
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    outside = tmp_path / "outside.safetensors"
    (checkpoint / "model.safetensors").rename(outside)
    (checkpoint / "model.safetensors").symlink_to(outside)
    (checkpoint / "extra").symlink_to("/etc/hostname")
    out = tmp_path / "submission"
    code = console(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(out), "--checkpoint",
                    str(checkpoint)])
    line = _one_error(capsys, "superb submit")
    assert code == 2 and f"{checkpoint / 'model.safetensors'}: the checkpoint file is a symbolic link" in line
    assert not out.exists()  # predict.zip is not written before the checkpoint is checked


def test_the_model_package_holds_the_named_files_and_no_link_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_runs(tmp_path / "runs")
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    (checkpoint / "hostname").symlink_to("/etc/hostname")
    out = tmp_path / "submission"
    assert console(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(out), "--checkpoint",
                    str(checkpoint)]) == 0
    files = sorted(str(p.relative_to(out / "model_package")) for p in (out / "model_package").rglob("*"))
    assert files == ["README.md", "checkpoint", "checkpoint/config.yaml", "checkpoint/model.safetensors",
                     "expert.py", "hubconf.py", "requirements.txt"]
    assert zipfile.is_zipfile(out / "predict.zip") and sorted(os.listdir(out)) == ["model_package", "predict.zip"]


def test_a_prediction_file_that_is_a_link_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_runs(tmp_path / "runs")
    prediction = tmp_path / "runs" / "ks" / "lr0.01" / "test_predict.txt"
    prediction.unlink()
    prediction.symlink_to("/etc/hostname")
    code = console(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    line = _one_error(capsys, "superb submit")
    assert code == 2 and f"{prediction}: the prediction file is a symbolic link (to /etc/hostname)" in line
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_checkpoint_folder_holding_links(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    outside = tmp_path / "outside.safetensors"
    (checkpoint / "model.safetensors").rename(outside)
    (checkpoint / "model.safetensors").symlink_to(outside)
    code = console(["export", str(checkpoint), "--out", str(tmp_path / "out"), "--format", "huggingface"])
    line = _one_error(capsys, "export")
    assert code == 2 and f"{checkpoint / 'model.safetensors'}: the checkpoint file is a symbolic link" in line
    assert not (tmp_path / "out").exists()


def test_the_models_input_checks_raise_the_projects_input_error():
    import torch
    from conftest import tiny_config

    from learn2diss.errors import InputError
    from learn2diss.upstream.model import Learn2Diss

    model = Learn2Diss(tiny_config())
    with pytest.raises(InputError, match="waveforms contain NaN or inf"):
        model.check_input(torch.full((1, 16000), float("nan")), None)
    with pytest.raises(InputError, match="utterance too short"):
        model.check_input(torch.zeros(1, 10), None)


def test_a_broken_checkpoint_is_refused_before_predict_zip_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_runs(tmp_path / "runs")
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    (checkpoint / "model.safetensors").write_bytes(b"not safetensors")
    out = tmp_path / "submission"
    code = console(["superb", "submit", "--runs", str(tmp_path / "runs"), "--out", str(out), "--checkpoint",
                    str(checkpoint)])
    line = _one_error(capsys, "superb submit")
    assert code == 2 and str(checkpoint / "model.safetensors") in line
    assert not out.exists()
