"""The demo: the reduced end-to-end run (every table and figure, then a rerun that skips every stage), its
phone-recognition head, the Witten-Bell ARPA writer, and the MFCC targets of its parent."""

from __future__ import annotations

import json
import math
import re

import kenlm
import numpy as np
import pandas as pd
import pytest
import torch
from test_synth import require_synthesisers

from learn2diss.cli import main
from learn2diss.data.batching import frames_for_samples
from learn2diss.demo.phone_recognition import (
    HeadSettings,
    edit_distance,
    greedy_decode,
    phone_error_rate,
)
from learn2diss.demo.plan import GRID, MI, NO_MI, QUICK
from learn2diss.demo.report import DIRECTIONS, METRICS, PER
from learn2diss.eval.ctc.ngram import BOS, EOS, count_ngrams, witten_bell, write_arpa
from learn2diss.pretrain.targets import mfcc_features

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
    assert set(rows["setting"]) == {"demo-parent", NO_MI, MI} and set(rows["split"]) == {"test"}
    assert rows.groupby("setting")["seed"].nunique().to_dict() == {"demo-parent": 1, NO_MI: 2, MI: 2}
    assert set(METRICS) <= set(rows["metric"]) and rows["value"].notna().all()
    assert set(json.loads((out / "asr.json").read_text())) == {"demo-parent", *cells}
    per = rows[rows["metric"] == PER]["value"]
    assert (per > 0).all()  # a few CTC epochs: many insertions, so above 100 % too

    summary = (out / "summary.md").read_text()
    metrics = summary.split("## All metrics")[1].split("## Time per stage")[0]
    lines = [line for line in metrics.splitlines() if line.startswith("| ")]
    assert len(lines) == 4 and all(line.count("|") == len(METRICS) + 3 for line in lines)
    l2d_cells = [cell.strip() for line in lines[2:] for cell in line.strip("|").split("|")[2:]]
    assert all(re.fullmatch(r"\d+\.\d ± \d+\.\d", c) for c in l2d_cells), l2d_cells  # 2 seeds: an interval
    directions = summary.split("## Table 5 directions")[1].split("## All metrics")[0]
    verdicts = [line.rsplit("|", 2)[1].strip() for line in directions.splitlines() if line.startswith("| ")][1:]
    assert len(verdicts) == len(DIRECTIONS) and set(verdicts) <= {"yes", "no", "not resolved"}
    for line in directions.splitlines()[4:4 + len(DIRECTIONS)]:  # the verdict follows from the printed interval
        low, high = map(float, re.search(r"\[([-+0-9.]+), ([-+0-9.]+)\]", line).groups())
        assert (line.endswith("| not resolved |")) == (low <= 0 <= high) or abs(low) < 0.05 or abs(high) < 0.05
    timing = summary.split("## Time per stage")[1]
    assert timing.count("\n| ") == 6 + len(cells) + 2 and "**total**" in timing

    capsys.readouterr()
    assert main(args) == 0  # everything cached: every stage is skipped, the report is written again
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 6 + len(cells) and "# Learn2Diss demo: summary" in printed
    assert pd.read_csv(out / "rows.csv").drop(columns="git_commit").equals(rows.drop(columns="git_commit"))


def test_demo_refuses_a_work_folder_made_with_other_settings(tmp_path):
    from learn2diss.demo.pipeline import DemoError

    work = tmp_path / "work"
    work.mkdir()
    (work / "demo.json").write_text('{"speakers": 3}')
    with pytest.raises(DemoError, match="other settings"):
        main(["demo", "--quick", "--work-dir", str(work), "--out", str(tmp_path / "out")])
