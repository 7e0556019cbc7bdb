"""The demo: the reduced end-to-end run (every table and figure, then a rerun that skips every stage), the
shipped parent and the command that trains it, the phone-recognition head, the Witten-Bell ARPA writer, and the
MFCC targets of its parent."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import kenlm
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_synth import require_synthesisers

from learn2diss.cli import main
from learn2diss.data.batching import frames_for_samples
from learn2diss.demo.floors import FLOORS
from learn2diss.demo.plan import GRID, MI, NO_MI, PARENT, QUICK, SHIPPED_PARENT, SHIPPED_PARENT_HASH
from learn2diss.demo.report import DIRECTIONS, METRICS, PER
from learn2diss.eval.ctc.ngram import BOS, EOS, count_ngrams, witten_bell, write_arpa
from learn2diss.eval.phone_recognition import (
    HeadSettings,
    edit_distance,
    greedy_decode,
    phone_error_rate,
)
from learn2diss.eval.results import checkpoint_hash
from learn2diss.pretrain.config import load_config
from learn2diss.pretrain.targets import mfcc_features
from learn2diss.upstream.checkpoints import load_model, read_model_config

SENTENCES = ["the cat sat", "the cat sat on the mat", "a dog sat", "the dog", "on the mat the cat sat"]


def backoff_probability(word: str, history: tuple[str, ...], probs: list[dict], backoff: dict, order: int) -> float:
    """P(word | history) by the ARPA back-off rule, from the writer's tables."""
    history = history[-(order - 1):] if order > 1 else ()
    gram = (*history, word)
    if gram in probs[len(gram) - 1]:
        return probs[len(gram) - 1][gram]
    if not history:
        return probs[0][("<unk>",)]
    return backoff.get(history, 1.0) * backoff_probability(word, history[1:], probs, backoff, order)


def test_witten_bell_arpa_sums_to_one_and_kenlm_reads_the_same_scores(tmp_path):
    counts = count_ngrams(SENTENCES, order=4)
    probs, backoff = witten_bell(counts)
    vocabulary = counts.vocabulary()
    for history in [(), (BOS,), ("the",), ("the", "cat"), (BOS, "the", "cat"), ("on", "the", "mat"), ("zebra",)]:
        total = sum(backoff_probability(w, history, probs, backoff, 4) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-9), history
    model = kenlm.Model(str(write_arpa(tmp_path / "lm.arpa", SENTENCES, order=4)))
    for sentence in ["the cat sat", "the dog sat on the mat", "a cat", "zebra"]:
        words = [BOS, *sentence.split(), EOS]
        ours = sum(math.log10(backoff_probability(w, tuple(words[:i]), probs, backoff, 4))
                   for i, w in enumerate(words[1:], start=1))
        assert model.score(sentence, bos=True, eos=True) == pytest.approx(ours, abs=1e-4), sentence
    # a seen continuation beats an unseen one
    assert model.score("the cat sat", bos=True, eos=True) > model.score("the sat cat", bos=True, eos=True)
    with pytest.raises(ValueError, match="reserved"):
        count_ngrams(["the </s> cat"])


def test_mfcc_targets_are_39_dimensional_on_the_model_frame_grid():
    conv = [[128, 40, 20], [128, 16, 16]]
    wav = torch.randn(16_000, generator=torch.Generator().manual_seed(0))
    for samples in (400, 3_210, 16_000):
        frames = frames_for_samples(samples, conv)
        feats = mfcc_features(wav[:samples], frames)
        assert feats.shape == (frames, 39) and torch.isfinite(feats).all()
    # frame i covers samples [320 i, 320 i + 400): changing the audio after frame 10's window leaves frames < 10 alone
    a = mfcc_features(wav, 50)
    changed = wav.clone()
    changed[320 * 12 + 400 :] = 0
    b = mfcc_features(changed, 50)
    assert torch.allclose(a[:10, :13], b[:10, :13]) and not torch.allclose(a[20:, :13], b[20:, :13])


def test_phone_error_rate_of_the_linear_ctc_head():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], ["a"]) == 1 and edit_distance("ab", "ab") == 0
    logits = np.eye(4)[[0, 2, 2, 0, 2, 3, 3, 0]]
    assert greedy_decode(logits) == [2, 2, 3]  # repeats merged, a blank separates the two 2s
    rng = np.random.default_rng(0)
    inventory = ["AA", "B", "K", "S"]

    def utterance(n: int, informative: bool) -> tuple[np.ndarray, list[str]]:
        ids = rng.integers(0, 4, size=n)
        frames = np.repeat(ids, 4)  # 4 frames per phone
        x = np.hstack([np.eye(4)[frames], np.tile([[1], [0], [0], [0]], (n, 1))]) + 0.1 * rng.standard_normal((len(frames), 5)) if informative else \
            rng.standard_normal((len(frames), 6))
        return x, [inventory[i] for i in ids]

    for informative, bound in ((True, lambda per: per < 10), (False, lambda per: per > 50)):
        data = {f"u{k}": utterance(8, informative) for k in range(60)}
        train = {u: data[u][0] for u in list(data)[:40]}
        test = {u: data[u][0] for u in list(data)[40:]}
        phones = {u: data[u][1] for u in data}
        per, details = phone_error_rate(train, phones, test, phones, HeadSettings(epochs=30, lr=1e-1))
        assert bound(per), (informative, per)
        assert "40 train / 20 test utterances" in details


@pytest.fixture
def one_thread():
    """torch on one thread: OpenMP threads spin while they wait, so beside another CPU-bound job on a 2-core
    machine a 2-thread run gets many times slower (docs/demo.md); in-process, OMP_WAIT_POLICY comes too late."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_demo_writes_every_table_and_figure_and_a_rerun_skips_every_stage(tmp_path, capsys, one_thread):
    require_synthesisers()
    args = ["demo", "--quick", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = tmp_path / "out"
    cells = [f"{s.name}-seed{seed}" for s in GRID.settings for seed in QUICK.seeds]
    for name in ("embeddings_demo-parent", *(f"embeddings_{s.name}-seed0" for s in GRID.settings), "training_curves"):
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    rows = pd.read_csv(out / "rows.csv")
    assert set(rows["setting"]) == {*FLOORS, PARENT, NO_MI, MI} and set(rows["split"]) == {"test"}
    assert rows.groupby("setting")["seed"].nunique().to_dict() == {**dict.fromkeys(FLOORS, 1), PARENT: 1, NO_MI: 2,
                                                                    MI: 2}
    assert set(METRICS) <= set(rows[rows["setting"] == MI]["metric"]) and rows["value"].notna().all()
    frame_side = {m for m in METRICS if "/utterance/" not in m and "utt:" not in m}
    assert frame_side <= set(rows[rows["setting"] == "mfcc-39"]["metric"])  # the floors: the frame-encoder measures
    per = rows[rows["metric"] == PER]
    assert set(per["setting"]) == {*FLOORS, PARENT, NO_MI, MI} and (per["value"] > 0).all()
    assert set(rows.loc[rows["setting"] == PARENT, "checkpoint_hash"]) == {SHIPPED_PARENT_HASH}

    summary = (out / "summary.md").read_text()
    metrics = summary.split("## All metrics")[1].split("## Time per stage")[0]
    lines = [line for line in metrics.splitlines() if line.startswith("| ")]
    assert len(lines) == 6 and all(line.count("|") == len(METRICS) + 3 for line in lines)
    assert lines[1].startswith("| MFCC-20") and lines[2].startswith("| MFCC-39") and " – |" in lines[1]
    l2d_cells = [cell.strip() for line in lines[4:] for cell in line.strip("|").split("|")[2:]]
    assert all(re.fullmatch(r"\d+\.\d ± \d+\.\d", c) for c in l2d_cells), l2d_cells  # 2 seeds: an interval
    directions = summary.split("## Table 5 directions")[1].split("## All metrics")[0]
    verdicts = [line.rsplit("|", 2)[1].strip() for line in directions.splitlines() if line.startswith("| ")][1:]
    assert len(verdicts) == len(DIRECTIONS) and set(verdicts) <= {"yes", "no", "not resolved"}
    for (metric, _, _), line in zip(DIRECTIONS, directions.splitlines()[4:4 + len(DIRECTIONS)], strict=True):
        low, high = map(float, re.search(r"\[([-+0-9.]+), ([-+0-9.]+)\]", line).groups())
        # the verdict follows from the printed interval, and the interval is the paired one (same seeds)
        assert (line.endswith("| not resolved |")) == (low <= 0 <= high) or abs(low) < 0.05 or abs(high) < 0.05
        diffs = [rows[(rows["setting"] == MI) & (rows["seed"] == s) & (rows["metric"] == metric)]["value"].item()
                 - rows[(rows["setting"] == NO_MI) & (rows["seed"] == s) & (rows["metric"] == metric)]["value"].item()
                 for s in QUICK.seeds]
        assert f"| {np.mean(diffs):+.1f} |" in line
    timing = summary.split("## Time per stage")[1]
    assert timing.count("\n| ") == 6 + 1 + len(cells) + 2 and "**total**" in timing
    stages = [line for line in timing.splitlines() if line.startswith("| ")][1:-1]  # no header, no total
    total = [line for line in timing.splitlines() if line.startswith("| **total**")][0]
    walls = [float(line.split("|")[2]) for line in stages if "&nbsp;" not in line]  # parallel runs: the group counts
    assert float(total.split("|")[2].strip(" *")) == pytest.approx(sum(walls), abs=len(walls))

    capsys.readouterr()
    assert main(args) == 0  # everything cached: every stage is skipped, the report is written again
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 6 + 1 + len(cells) and "# Learn2Diss demo: summary" in printed
    assert pd.read_csv(out / "rows.csv").drop(columns="git_commit").equals(rows.drop(columns="git_commit"))


def test_the_shipped_parent_is_the_documented_file_and_loads_in_float32():
    """The package data is the file docs/demo.md names (its tensors' hash), stored in float16, loaded in float32,
    with the architecture of config demo_parent (what `learn2diss demo --train-parent` trains)."""
    assert checkpoint_hash(SHIPPED_PARENT) == SHIPPED_PARENT_HASH
    docs = (Path(__file__).resolve().parents[1] / "docs" / "demo.md").read_text()
    assert f"`{SHIPPED_PARENT_HASH}`" in docs
    model = load_model(SHIPPED_PARENT)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    stored = load_file(SHIPPED_PARENT / "model.safetensors").values()
    assert {t.dtype for t in stored if t.is_floating_point()} == {torch.float16}  # (batch-norm counters: int64)
    config = read_model_config(SHIPPED_PARENT)
    assert config.parent == load_config("demo_parent").model.parent and config.frame.num_frozen_layers == 0


def test_train_parent_builds_a_checkpoint_of_the_shipped_architecture(tmp_path, one_thread):
    """The documented command (`learn2diss demo --train-parent`, its parent stage) trains a parent whose float16
    copy has the shipped file's architecture: the same config and the same tensors (names, shapes, dtypes)."""
    require_synthesisers()
    from learn2diss.demo import pipeline as p
    from learn2diss.demo.plan import DemoPaths

    paths = DemoPaths(tmp_path / "work", tmp_path / "out")
    settings = dataclasses.replace(QUICK, train_parent=True)
    p.build_corpus(paths, settings, jobs=2)
    p.pretrain_parent(paths, settings, "cpu")
    half = paths.checkpoint(f"{PARENT}-fp16")
    assert read_model_config(half) == read_model_config(SHIPPED_PARENT)
    ours, shipped = (load_file(d / "model.safetensors") for d in (half, SHIPPED_PARENT))
    assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {k: (v.shape, v.dtype) for k, v in shipped.items()}
    provenance = yaml.safe_load((half / "config.yaml").read_text())["extra"]
    assert provenance["command"] == "learn2diss demo --train-parent" and provenance["steps"] == 6
    assert provenance["corpus"]["split"] == "train"


def test_demo_refuses_a_work_folder_made_with_other_settings(tmp_path):
    from learn2diss.demo.pipeline import DemoError

    work = tmp_path / "work"
    work.mkdir()
    (work / "demo.json").write_text('{"speakers": 3}')
    with pytest.raises(DemoError, match="other settings"):
        main(["demo", "--quick", "--work-dir", str(work), "--out", str(tmp_path / "out")])
