"""ZeroSpeech 2021 phonetic (abxLS) submission packages: build, resume, validate every rule, score.

On a generated dataset in the published layout (tests/zerospeech_helpers.py) and a tiny 50 Hz checkpoint.
The slow test runs the real ``zerospeech-benchmarks`` validator, in a venv of its own, on the same package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from eval_helpers import tiny_checkpoint
from zerospeech_helpers import SUBSETS, write_zr2021

from learn2diss.cli import main
from learn2diss.errors import InputError, OutputExistsError
from learn2diss.eval.zerospeech import (
    InvalidPackage,
    Meta,
    read_dataset,
    staging_dir,
    validate_package,
)
from learn2diss.upstream.checkpoints import load_model

META = ["--authors", "Ada Lovelace, Alan Turing", "--institution", "Analytical Engine Society",
        "--description", "Learn2Diss frame encoder, last layer", "--train-set", "LibriSpeech 960 h",
        "--open-source", "--gpu-budget", "60 h on 1 H200", "--paper-title", "A test system",
        "--paper-url", "https://arxiv.org/abs/2407.02543", "--code-url", "https://example.org/learn2diss"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_zr2021(tmp_path_factory.mktemp("zr2021"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def package(dataset, checkpoint, tmp_path_factory) -> Path:
    """A package built by the command (``learn2diss zerospeech submit``), scored, results in RESULTS/abx.csv."""
    root = tmp_path_factory.mktemp("submission")
    argv = ["zerospeech", "submit", "--checkpoint", str(checkpoint), "--zr2021", str(dataset), "--out",
            str(root / "tiny"), "--results", str(root / "results"), *META]
    assert main(argv) == 0
    return root / "tiny"


def submit(dataset: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["zerospeech", "submit", "--checkpoint", str(checkpoint), "--zr2021", str(dataset), "--out", str(out),
                 "--no-score", *META, *extra])


def test_package_holds_the_features_meta_and_params(package, dataset, checkpoint):
    assert validate_package(package, read_dataset(dataset)) == []
    assert sorted(p.name for p in package.iterdir()) == ["dev-clean", "dev-other", "meta.yaml", "params.yaml",
                                                         "test-clean", "test-other"]
    model = load_model(checkpoint).eval()
    for subset in SUBSETS:
        wavs = sorted((dataset / "phonetic" / subset).glob("*.wav"))
        assert sorted(p.stem for p in (package / subset).iterdir()) == [w.stem for w in wavs]  # no cache left
    import soundfile as sf

    wav, _ = sf.read(dataset / "phonetic" / "dev-other" / "s2-B1.wav", dtype="float32")
    with torch.no_grad():
        expected = model(torch.from_numpy(wav)[None]).frame_hidden_states[-1][0].numpy()
    features = np.load(package / "dev-other" / "s2-B1.npy")
    assert features.dtype == np.float64 and features.shape == expected.shape
    np.testing.assert_allclose(features, expected, atol=1e-6)
    meta = yaml.safe_load((package / "meta.yaml").read_text())
    assert meta["benchmark_name"] == "abxLS" and meta["open_source"] is True
    assert meta["publication"]["authors"] == "Ada Lovelace, Alan Turing"
    assert meta["publication"]["author_label"] == "Lovelace et al."
    assert meta["model_info"] == {"system_description": "Learn2Diss frame encoder, last layer",
                                  "train_set": "LibriSpeech 960 h", "gpu_budget": "60 h on 1 H200"}
    params = yaml.safe_load((package / "params.yaml").read_text())
    assert params["feature_size"] == pytest.approx(0.02)  # the checkpoint's 320-sample stride at 16 kHz
    assert (params["distance_mode"], params["pooling"], params["score_file_type"]) == ("cosine", "none", ".npy")


def test_scores_beside_the_package(package):
    table = package.with_name("tiny.abx.md").read_text()
    for subset in ("dev-clean", "dev-other"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {subset} |"))
        within, across = (float(x) for x in row.split("|")[2:4])
        assert 0 <= within <= 100 and 0 <= across <= 100
    assert "| test-clean | no item file" in table
    rows = (package.parent / "results" / "abx.csv").read_text()
    assert rows.count("abx_error") == 4 and "dev-clean" in rows and "test-clean" not in rows


def test_missing_meta_fields_are_named_before_extraction(dataset, checkpoint, tmp_path):
    argv = ["zerospeech", "submit", "--checkpoint", str(checkpoint), "--zr2021", str(dataset), "--out", str(tmp_path / "p"),
            "--authors", "<required(str): the full names of the authors>", "--description", ""]
    with pytest.raises(InputError, match="meta.yaml needs institution, description, train_set, open_source, "
                                         r"authors \(a template value\)"):
        main(argv)
    assert not list(tmp_path.iterdir())
    (tmp_path / "meta.yaml").write_text("authors: A B\nsurname: B\n")
    with pytest.raises(InputError, match="--meta: unknown key"):
        main([*argv[:8], "--meta", str(tmp_path / "meta.yaml")])


def test_meta_file_and_flags(tmp_path):
    meta = Meta.from_sources({"authors": "A B", "institution": "X", "description": "d", "train_set": "t",
                              "open_source": False, "year": 2024}, {"institution": "Y", "team": None})
    written = meta.to_yaml()
    assert written["publication"]["institution"] == "Y" and written["publication"]["publication_year"] == 2024
    assert written["open_source"] is False and written["publication"]["author_label"] == "B"


def test_builds_resume_and_only_a_valid_package_replaces_the_old_one(package, dataset, checkpoint, tmp_path,
                                                                     monkeypatch):
    """Killed after 5 files, then a build with a NaN feature (refused), then a clean one: the old package stays in
    place until the last; each run resumes from the files the previous ones finished; the bad file is redone."""
    import learn2diss.data.audio as audio
    import learn2diss.eval.features as features

    out = tmp_path / "pkg"
    shutil.copytree(package, out)

    def snapshot() -> dict:
        return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    old = snapshot()
    real_read, real_save, calls = audio.read_audio, features.save_npy, []

    def dies_after_five(path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 5:
            raise KeyboardInterrupt  # as if the run were killed
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(audio, "read_audio", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        submit(dataset, checkpoint, out)
    staging = staging_dir(out)
    first = {p: p.stat().st_mtime_ns for p in staging.rglob("*.npy")}
    assert len(first) == 5 and snapshot() == old

    def nan_in_test_other(path, array):
        real_save(path, np.full_like(array, np.nan) if path.parent.name == "test-other" else array)

    monkeypatch.setattr(audio, "read_audio", real_read)
    monkeypatch.setattr(features, "save_npy", nan_in_test_other)
    with pytest.raises(InvalidPackage) as error:
        submit(dataset, checkpoint, out)
    assert {p.rule for p in error.value.problems} == {"finite"} and len(error.value.problems) == 3
    assert "extracted again on the next run" in str(error.value)
    assert snapshot() == old
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in first.items())  # resumed, not recomputed
    assert not list((staging / "test-other").glob("*.npy"))  # the refused files are gone from the staging

    monkeypatch.setattr(features, "save_npy", real_save)
    assert submit(dataset, checkpoint, out) == 0
    assert not staging.exists()
    assert validate_package(out, read_dataset(dataset)) == []
    for path, stamp in first.items():  # the first run's files made it into the package as they were
        assert (out / path.relative_to(staging)).stat().st_mtime_ns == stamp
    assert snapshot() == old  # the same checkpoint and meta: the same package


def test_a_folder_that_is_not_a_package_is_not_replaced(dataset, checkpoint, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="is not a ZeroSpeech package"):
        submit(dataset, checkpoint, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def _mutate(package: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(package, copy)
    change(copy)
    return copy


def _edit_yaml(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


# (case, change to a valid package, expected (rule, fragment of where, fragment of the message))
MALFORMED = {
    "extra file": (lambda p: np.save(p / "dev-clean" / "intruder.npy", np.zeros((3, 32))),
                   ("file list", "intruder.npy", "extra file")),
    "missing file": (lambda p: (p / "test-other" / "s3-A0.npy").unlink(),
                     ("file list", "s3-A0.npy", "expected file not found")),
    "missing subset": (lambda p: shutil.rmtree(p / "dev-other"), ("file list", "dev-other", "missing")),
    "not a numpy array": (lambda p: (p / "dev-clean" / "s1-A0.npy").write_text("not numpy"),
                          ("numpy", "s1-A0.npy", "does not contain a numpy array")),
    "pickled objects": (lambda p: np.save(p / "dev-clean" / "s1-A0.npy", np.array([{"a": 1}], dtype=object),
                                          allow_pickle=True), ("numpy", "s1-A0.npy", "numpy array")),
    "float32": (lambda p: np.save(p / "dev-clean" / "s1-A1.npy", np.zeros((20, 32), np.float32)),
                ("dtype", "s1-A1.npy", "must be float64")),
    "1-D": (lambda p: np.save(p / "test-clean" / "s2-A0.npy", np.zeros(32)), ("2-D", "s2-A0.npy", "2 dimensions")),
    "columns": (lambda p: np.save(p / "dev-other" / "s1-B0.npy", np.zeros((20, 31))),
                ("columns", "s1-B0.npy", "31 columns where 11 of the subset's 12 files have 32")),
    "one frame": (lambda p: np.save(p / "dev-clean" / "s3-A0.npy", np.zeros((1, 32))),
                  ("frames", "s3-A0.npy", "at least 2 frames")),
    "NaN": (lambda p: np.save(p / "dev-clean" / "s3-A0.npy", np.full((20, 32), np.nan)), ("finite", "s3-A0.npy", "NaN")),
    "meta missing": (lambda p: (p / "meta.yaml").unlink(), ("meta", "meta.yaml", "missing")),
    "meta template value": (lambda p: _edit_yaml(p / "meta.yaml", lambda m: m["publication"].update(
        institution="<required(str): name of the institution (University, company, etc..)>")),
                            ("meta", "meta.yaml", "publication.institution has a value from the template")),
    "meta field missing": (lambda p: _edit_yaml(p / "meta.yaml", lambda m: m["model_info"].pop("train_set")),
                           ("meta", "meta.yaml", "model_info.train_set is required")),
    "meta empty field": (lambda p: _edit_yaml(p / "meta.yaml", lambda m: m["publication"].update(authors="  ")),
                         ("meta", "meta.yaml", "publication.authors is empty")),
    "meta wrong type": (lambda p: _edit_yaml(p / "meta.yaml", lambda m: m["publication"].update(
        publication_year="this year")), ("meta", "meta.yaml", "publication.publication_year must be int")),
    "meta open_source": (lambda p: _edit_yaml(p / "meta.yaml", lambda m: m.pop("open_source")),
                         ("meta", "meta.yaml", "open_source is required")),
    "meta benchmark": (lambda p: _edit_yaml(p / "meta.yaml", lambda m: m.update(benchmark_name="sLM21")),
                       ("meta", "meta.yaml", "benchmark_name must be 'abxLS'")),
    "params missing": (lambda p: (p / "params.yaml").unlink(), ("params", "params.yaml", "missing")),
    "params distance": (lambda p: _edit_yaml(p / "params.yaml", lambda m: m.update(distance_mode="manhattan")),
                        ("params", "params.yaml", "distance_mode must be one of euclidian, cosine")),
    "params frame shift": (lambda p: _edit_yaml(p / "params.yaml", lambda m: m.update(feature_size=-0.02)),
                           ("params", "params.yaml", "feature_size (the frame shift, s) must be a positive number")),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_each_rule_names_its_problem(case, package, dataset, tmp_path):
    change, (rule, where, message) = MALFORMED[case]
    problems = validate_package(_mutate(package, tmp_path, change), read_dataset(dataset))
    assert len(problems) == 1, problems
    assert problems[0].rule == rule and where in problems[0].where and message in problems[0].message, problems[0]


def test_every_problem_is_reported_at_once(package, dataset, tmp_path, capsys):
    """`learn2diss zerospeech validate` lists the problems of every rule broken at the same time; exit status 2."""

    def break_everything(folder: Path) -> None:
        for case in ("extra file", "missing file", "not a numpy array", "float32", "1-D", "columns", "one frame",
                     "meta template value", "params distance"):
            MALFORMED[case][0](folder)

    broken = _mutate(package, tmp_path, break_everything)
    from learn2diss.cli import console

    assert console(["zerospeech", "validate", str(broken), "--zr2021", str(dataset)]) == 2
    out, err = capsys.readouterr()
    rules = [line.split("[")[1].split("]")[0] for line in out.splitlines()]
    assert sorted(set(rules)) == ["2-D", "columns", "dtype", "file list", "frames", "meta", "numpy", "params"]
    assert "9 problem(s)" in err
    assert console(["zerospeech", "validate", str(package), "--zr2021", str(dataset)]) == 0


def test_dataset_layout_errors_are_named(tmp_path):
    (tmp_path / "phonetic" / "dev-clean").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"dev-clean: no \.wav files; .*dev-other: missing"):
        read_dataset(tmp_path)


ZEROSPEECH_CHECK = r'''
import json, os, sys
from pathlib import Path
from zerospeech.submissions.abxLS import AbxLSSubmission
from zerospeech.submissions import MetaFile
from zerospeech.tasks.abx.abxLS_phoneme import ABX2Parameters
package = Path(sys.argv[1])
submission = AbxLSSubmission.load(package)
valid = submission.valid
responses = ~submission.validation_output
meta = MetaFile.from_file(package / "meta.yaml", enforce=True)
meta.username = "learn2diss-test"  # what `zrc submit` sets from the platform account before checking
meta_ok = meta.is_valid()
params = submission.params
print(json.dumps({
    "valid": valid,
    "errors": [str(r) for r in responses if not r.valid()],
    "checks": len(responses),
    "meta_valid": meta_ok,
    "meta_messages": [str(r) for r in ~meta.validation_context if not r.ok()],
    "feature_size": params.feature_size, "distance": params.distance_mode.value,
}))
'''


def _zerospeech_venv(root: Path) -> Path | None:
    """A venv with zerospeech-benchmarks from the package index, or None where it cannot be built."""
    python = root / "venv" / "bin" / "python"
    steps = [[sys.executable, "-m", "venv", str(root / "venv")],
             [str(python), "-m", "pip", "install", "--quiet", "zerospeech-benchmarks==0.9.4"]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
    return python


def _app_dir(root: Path, dataset: Path) -> Path:
    """zerospeech-benchmarks' data folder with our dataset registered as its abxLS-dataset (no download).

    Its repository index is dated 30 days back: the package then skips the index update (an HTTP request)."""
    app = root / "zr-data"
    location = app / "datasets" / "abxLS-dataset"
    location.mkdir(parents=True)
    (app / "repo.json").write_text(json.dumps({
        "last_modified": "2024-01-01T00:00:00", "checkpoints": [], "samples": [],
        "datasets": [{"name": "abxLS-dataset", "type": "internal", "zip_url": "https://download.zerospeech.com/x.zip",
                      "md5sum": "0", "total_size": 1}]}))
    old = time.time() - 30 * 86400
    os.utime(app / "repo.json", (old, old))
    subsets = {}
    for subset in SUBSETS:
        folder = dataset / "phonetic" / subset
        items = {"wav_list": {"item_type": "filelist_item", "file_type": "wav", "relative_path": False,
                              "files_list": [str(p) for p in sorted(folder.glob("*.wav"))]}}
        if (folder / f"{subset}.item").is_file():
            items["triphone_item_file"] = {"item_type": "file_item", "file_type": "item", "relative_path": False,
                                           "file": str(folder / f"{subset}.item")}
        subsets[subset.replace("-", "_")] = {"items": items}
    (location / "index.json").write_text(json.dumps({"subsets": subsets}))
    return app


@pytest.mark.slow
def test_the_zerospeech_validator_accepts_the_package(package, dataset, tmp_path):
    """The real zerospeech-benchmarks validator (its own venv, its pinned pydantic<2) on our package and a broken one."""
    python = _zerospeech_venv(tmp_path)
    if python is None:
        pytest.skip("could not build a venv with zerospeech-benchmarks 0.9.4 from the package index")
    env = {**os.environ, "APP_DIR": str(_app_dir(tmp_path, dataset)), "TMP_DIR": str(tmp_path)}

    def check(folder: Path) -> dict:
        done = subprocess.run([str(python), "-c", ZEROSPEECH_CHECK, str(folder)], capture_output=True, text=True,
                              env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = check(package)
    print(json.dumps(result, indent=1))
    assert result["valid"] and result["errors"] == [] and result["checks"] > 30
    assert result["meta_valid"] and result["meta_messages"] == []
    assert result["feature_size"] == pytest.approx(0.02) and result["distance"] == "cosine"

    # one problem per rule the two validators share and report the same way (theirs stops at an IndexError on a
    # 1-D array, reports missing files only without extra ones, and flags every file after a column mismatch)
    broken = _mutate(package, tmp_path, lambda p: [MALFORMED[c][0](p) for c in ("float32", "extra file",
                                                                                "missing file")])
    theirs = check(broken)
    print(json.dumps(theirs, indent=1))
    ours = validate_package(broken, read_dataset(dataset))
    assert not theirs["valid"] and len(theirs["errors"]) == len(ours) == 3
    assert sum("Array should be of type: float64" in e for e in theirs["errors"]) == 1
    assert sum("extra file found" in e for e in theirs["errors"]) == 1
    assert sum("expected file not found" in e for e in theirs["errors"]) == 1
