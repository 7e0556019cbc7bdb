"""ABX: known answers by construction, agreement with a slow direct implementation, 0.02 s slicing."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from learn2diss.eval.abx import AbxSettings, item_frames, read_item_file, score_abx

HEADER = "#file onset offset #phone prev-phone next-phone speaker"


def write_set(root: Path, utterances: dict[str, np.ndarray], items: list[tuple]) -> tuple[Path, Path]:
    """Write per-utterance .npy features and an item file; items are (file, onset, offset, phone, prev, next, spk)."""
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    for name, array in utterances.items():
        np.save(features / f"{name}.npy", array.astype(np.float32))
    item_file = root / "test.item"
    lines = [HEADER] + [f"{f} {on:.4f} {off:.4f} {p} {pp} {nx} {s}" for f, on, off, p, pp, nx, s in items]
    item_file.write_text("\n".join(lines) + "\n")
    return features, item_file


def two_class_set(root: Path, same: bool) -> tuple[Path, Path]:
    """3 speakers x 2 phones x 3 items, one item per utterance at 0.2-0.4 s; class vectors equal if ``same``."""
    rng = np.random.default_rng(0)
    vectors = {"A": np.eye(8)[1], "B": np.eye(8)[1] if same else np.eye(8)[2]}
    utterances, items = {}, []
    for spk, phone, k in itertools.product(("s1", "s2", "s3"), "AB", range(3)):
        name = f"{spk}-{phone}{k}"
        x = np.tile(np.eye(8)[0], (50, 1))
        start, end = item_frames(0.2, 0.4)
        noise = 0.0 if same else 0.05 * rng.standard_normal((end - start, 8))
        x[start:end] = vectors[phone] + noise
        utterances[name] = x
        items.append((name, 0.2, 0.4, phone, "X", "Y", spk))
    return write_set(root, utterances, items)


def test_separable_classes_score_zero(tmp_path):
    features, item_file = two_class_set(tmp_path, same=False)
    scores = {s.speaker_mode: s.error for s in score_abx(features, item_file, AbxSettings())}
    assert scores == {"within": 0.0, "across": 0.0}


def test_identical_classes_score_fifty(tmp_path):
    features, item_file = two_class_set(tmp_path, same=True)
    scores = {s.speaker_mode: s.error for s in score_abx(features, item_file, AbxSettings())}
    assert scores == {"within": pytest.approx(50.0), "across": pytest.approx(50.0)}


# ---- slow direct implementation (no subsampling: groups are smaller than max_size_group) ----

def angular(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return np.arccos(np.clip(x @ y.T, -1.0, 1.0)) / math.pi


def dtw(x: np.ndarray, y: np.ndarray) -> float:
    """Cumulative angular distance along the best DTW path, divided by that path's length."""
    d = angular(x, y)
    n, m = d.shape
    cost = np.full((n, m), np.inf)
    for i, j in itertools.product(range(n), range(m)):
        prev = 0.0 if i == j == 0 else min(
            cost[i - 1, j] if i else np.inf, cost[i, j - 1] if j else np.inf, cost[i - 1, j - 1] if i and j else np.inf
        )
        cost[i, j] = d[i, j] + prev
    i, j, length = n - 1, m - 1, 1
    while i > 0 or j > 0:  # walk back, preferring the diagonal, then the left, then the up move
        moves = []
        if i and j:
            moves.append((cost[i - 1, j - 1], i - 1, j - 1))
        if j:
            moves.append((cost[i, j - 1], i, j - 1))
        if i:
            moves.append((cost[i - 1, j], i - 1, j))
        _, i, j = min(moves, key=lambda move: move[0])
        length += 1
    return float(cost[-1, -1] / length)


def theta(a_items, b_items, x_items, same_ax: bool) -> float:
    """Fraction of (a, b, x) triplets with d(a, x) < d(b, x), ties counting one half."""
    total, count = 0.0, 0
    for ia, a in enumerate(a_items):
        for ix, x in enumerate(x_items):
            if same_ax and ia == ix:
                continue
            dax = dtw(x, a)
            for b in b_items:
                dbx = dtw(x, b)
                total += 1.0 if dax < dbx else 0.5 if dax == dbx else 0.0
                count += 1
    return total / count


def reference_abx(features: dict[str, np.ndarray], items: list[tuple], mode: str) -> float:
    groups: dict[tuple, list[np.ndarray]] = {}
    for f, on, off, p, pp, nx, s in items:
        start, end = item_frames(on, off)
        groups.setdefault((f"{pp}+{nx}", s, p), []).append(features[f][start:end])
    contexts = {c for c, _, _ in groups}
    speakers = {s for _, s, _ in groups}
    cells: dict[tuple, list[float]] = {}  # (speaker, a, b) -> errors over contexts (and X speakers)
    for c, s in itertools.product(contexts, speakers):
        phones = sorted(p for cc, ss, p in groups if (cc, ss) == (c, s))
        if len(phones) < 2:
            continue
        for a, b in itertools.permutations(phones, 2):
            if mode == "within" and len(groups[c, s, a]) > 1:
                cells.setdefault((s, a, b), []).append(1 - theta(groups[c, s, a], groups[c, s, b], groups[c, s, a], True))
            if mode == "across":
                for sx in sorted(speakers - {s}):
                    if (c, sx, a) in groups:
                        error = 1 - theta(groups[c, s, a], groups[c, s, b], groups[c, sx, a], False)
                        cells.setdefault((s, a, b), []).append(error)
    by_pair: dict[tuple, list[float]] = {}
    for (_speaker, a, b), errors in cells.items():
        by_pair.setdefault((a, b), []).append(float(np.mean(errors)))
    return 100.0 * float(np.mean([np.mean(v) for v in by_pair.values()]))


def test_engine_matches_direct_implementation(tmp_path):
    rng = np.random.default_rng(3)
    prototypes = {p: rng.standard_normal(4) for p in "ABC"}
    utterances, items = {}, []
    for spk, ctx, phone in itertools.product(("s1", "s2", "s3"), ("X", "Z"), "ABC"):
        for k in range(int(rng.integers(1, 4))):
            name = f"{spk}-{ctx}{phone}{k}"
            x = rng.standard_normal((40, 4))
            onset = float(rng.uniform(0.1, 0.3))
            offset = onset + float(rng.uniform(0.05, 0.14))
            start, end = item_frames(onset, offset)
            x[start:end] += 1.2 * prototypes[phone]
            utterances[name] = x.astype(np.float32)
            items.append((name, onset, offset, phone, ctx, "Y", spk))
    features, item_file = write_set(tmp_path, utterances, items)
    # round-trip the times through the item file's 4-decimal text, as the engine reads them
    items = [(i.file, i.onset, i.offset, i.phone, i.prev_phone, i.next_phone, i.speaker) for i in read_item_file(item_file)]
    engine = {s.speaker_mode: s.error for s in score_abx(features, item_file, AbxSettings(max_x_across=10))}
    for mode in ("within", "across"):
        expected = reference_abx(utterances, items, mode)
        assert 0.5 < expected < 45.0  # a case where the answer is neither trivial 0 nor chance
        assert engine[mode] == pytest.approx(expected, abs=1e-3)


# ---- frame slicing at 0.02 s ----

# (onset, offset) -> hand-computed [start, end): start = ceil(50 t_on - 0.5), end = floor(50 t_off - 0.5)
BOUNDARY_CASES = {
    (0.2005, 0.2795): (10, 13),
    (0.2095, 0.3105): (10, 15),
    (0.2110, 0.2890): (11, 13),
    (0.1995, 0.2905): (10, 14),
    (0.2189, 0.3011): (11, 14),
    (0.2291, 0.2709): (11, 13),
}


def test_item_frames_hand_computed():
    for (onset, offset), expected in BOUNDARY_CASES.items():
        assert item_frames(onset, offset) == expected
    assert item_frames(0.2005, 0.2795, frame_shift=0.01) == (20, 27)


def boundary_set(root: Path, informative: str) -> tuple[Path, Path]:
    """Items whose only class information sits at one frame: 'first', 'last' or 'outside' (start-1 and end)."""
    neutral, vectors = np.eye(3)[0], {"A": np.eye(3)[1], "B": np.eye(3)[2]}
    utterances, items = {}, []
    for phone, ((onset, offset), (start, end)) in itertools.product("AB", BOUNDARY_CASES.items()):
        name = f"s1-{phone}-{start}-{end}-{onset}"
        x = np.tile(neutral, (40, 1))
        frames = {"first": [start], "last": [end - 1], "outside": [start - 1, end]}[informative]
        x[frames] = vectors[phone]
        utterances[name] = x
        items.append((name, onset, offset, phone, "X", "Y", "s1"))
    return write_set(root, utterances, items)


@pytest.mark.parametrize(("informative", "expected"), [("first", 0.0), ("last", 0.0), ("outside", 50.0)])
def test_engine_slices_items_at_0_02_s(tmp_path, informative, expected):
    """The engine reads exactly frames [start, end): the first and last are used, their neighbours are not."""
    features, item_file = boundary_set(tmp_path, informative)
    (score,) = score_abx(features, item_file, AbxSettings(speaker_modes=("within",)))
    assert score.error == pytest.approx(expected)


def test_default_zerospeech_shift_would_read_other_frames(tmp_path):
    features, item_file = boundary_set(tmp_path, "first")
    (score,) = score_abx(features, item_file, AbxSettings(speaker_modes=("within",), frame_shift=0.01))
    assert score.error == pytest.approx(50.0)


def test_missing_feature_file_is_named(tmp_path):
    features, item_file = two_class_set(tmp_path, same=False)
    (features / "s2-B1.npy").unlink()
    with pytest.raises(FileNotFoundError, match="s2-B1"):
        score_abx(features, item_file, AbxSettings())


def test_nan_features_are_named(tmp_path):
    features, item_file = two_class_set(tmp_path, same=False)
    bad = np.load(features / "s1-A0.npy")
    bad[3, 2] = np.nan
    np.save(features / "s1-A0.npy", bad)
    with pytest.raises(ValueError, match="s1-A0.npy: features contain NaN"):
        score_abx(features, item_file, AbxSettings())


def test_malformed_item_line_is_named(tmp_path):
    item_file = tmp_path / "bad.item"
    item_file.write_text(HEADER + "\nutt1 0.1 0.2 A X Y s1\nutt2 0.1 A X Y s1\n")
    with pytest.raises(ValueError, match=r"bad.item:3: expected 7 columns"):
        read_item_file(item_file)


# ---- command line, end to end with a tiny random checkpoint ----

def tiny_abx_corpus(root: Path) -> Path:
    """Two speakers x 3 utterances of 1 s; items of phones A/B in context X_Y at fixed times."""
    from eval_helpers import write_librispeech

    write_librispeech(root, {"11": ["A", "B", "C"], "22": ["A", "B", "C"]}, seconds=1.0)
    lines = [HEADER]
    for spk in ("11", "22"):
        for n in range(3):
            lines += [f"{spk}-100-{n:04d} 0.1000 0.3000 A X Y {spk}", f"{spk}-100-{n:04d} 0.5000 0.7000 B X Y {spk}"]
    item = root / "tiny.item"
    item.write_text("\n".join(lines) + "\n")
    return item


def test_abx_command_with_checkpoint(tmp_path):
    from eval_helpers import tiny_checkpoint

    from learn2diss.cli import main
    from learn2diss.eval.results import read_rows

    item = tiny_abx_corpus(tmp_path / "audio")
    ckpt = tiny_checkpoint(tmp_path / "my-ckpt", extra={"run": "/runs/l2d_h12", "step": 100})
    args = ["eval", "abx", "--checkpoint", str(ckpt), "--item", str(item), "--audio", str(tmp_path / "audio"),
            "--features", "frame:last", "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
    assert main(args) == 0
    rows = {r.condition: r for r in read_rows(tmp_path / "results" / "abx.csv")}
    assert set(rows) == {"within", "across"}
    assert all(0.0 <= r.value <= 100.0 and r.model == "my-ckpt" and len(r.checkpoint_hash) == 12 for r in rows.values())
    assert rows["within"].config == "l2d_h12@100"  # provenance from the exported checkpoint's run and step
    cached = np.load(tmp_path / "work" / "features" / "my-ckpt" / "tiny" / "frame_last" / "11-100-0000.npy")
    assert cached.shape == (49, 32)  # 50 Hz frames of 1 s of audio

    # the same features through --features-dir give the same scores
    folder = tmp_path / "work" / "features" / "my-ckpt" / "tiny" / "frame_last"
    args = ["eval", "abx", "--features-dir", str(folder), "--item", str(item), "--model-name", "again", "--results", str(tmp_path / "results")]
    assert main(args) == 0
    again = {r.condition: r.value for r in read_rows(tmp_path / "results" / "abx.csv") if r.model == "again"}
    assert again == {k: r.value for k, r in rows.items()}


def test_abx_command_zr2021_layout(tmp_path):
    from eval_helpers import tiny_checkpoint

    from learn2diss.cli import main
    from learn2diss.eval.results import read_rows

    root = tmp_path / "zr2021"
    item = tiny_abx_corpus(root / "phonetic" / "dev-clean")
    item.rename(root / "phonetic" / "dev-clean" / "dev-clean.item")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    common = ["eval", "abx", "--checkpoint", str(ckpt), "--zr2021", str(root), "--model-name", "L2D-H12",
              "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]
    with pytest.raises(FileNotFoundError, match="dev-other"):
        main(common)
    assert main([*common, "--sets", "dev-clean"]) == 0
    assert {(r.dataset, r.condition) for r in read_rows(tmp_path / "results" / "abx.csv")} == {
        ("dev-clean", "within"), ("dev-clean", "across")}


def test_abx_frame_shift_is_the_checkpoints_conv_stride(tmp_path, capsys):
    """A parent striding 160 samples has 100 Hz frames: with --ckpt the items are cut at 0.01 s (not a fixed
    0.02), the same features read back need --frame-shift 0.01, and a --frame-shift that contradicts the
    checkpoint is one error line."""
    from dataclasses import replace

    import torch
    from eval_helpers import tiny_50hz_config

    from learn2diss.cli import console, main
    from learn2diss.eval.features import FRAME_SHIFT_S, frame_shift
    from learn2diss.eval.results import read_rows
    from learn2diss.upstream.checkpoints import save_model
    from learn2diss.upstream.model import Learn2Diss

    base = tiny_50hz_config()
    config = replace(base, parent=replace(base.parent, conv_layers=((16, 10, 5), (16, 4, 4), (16, 4, 4), (16, 2, 2))))
    torch.manual_seed(0)
    model = Learn2Diss(config)
    assert frame_shift(model) == 0.01 and frame_shift(Learn2Diss(base)) == FRAME_SHIFT_S == 0.02
    ckpt = save_model(model, tmp_path / "ckpt100")
    item = tiny_abx_corpus(tmp_path / "audio")
    results = tmp_path / "results"
    args = ["eval", "abx", "--checkpoint", str(ckpt), "--item", str(item), "--audio", str(tmp_path / "audio"),
            "--results", str(results), "--work-dir", str(tmp_path / "work")]
    assert main(args) == 0
    rows = {r.condition: r for r in read_rows(results / "abx.csv")}
    assert all("frame_shift=0.01 " in r.details for r in rows.values())
    folder = tmp_path / "work" / "features" / "ckpt100" / "tiny" / "frame_last"
    assert np.load(folder / "11-100-0000.npy").shape[0] == 99  # 100 Hz frames of 1 s of audio

    assert main(["eval", "abx", "--features-dir", str(folder), "--item", str(item), "--model-name", "again",
                 "--frame-shift", "0.01", "--results", str(results)]) == 0
    again = {r.condition: r.value for r in read_rows(results / "abx.csv") if r.model == "again"}
    assert again == {k: r.value for k, r in rows.items()}

    capsys.readouterr()
    assert console([*args, "--frame-shift", "0.02"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("learn2diss eval abx: error: --frame-shift 0.02: ") and "0.01" in err[0]
