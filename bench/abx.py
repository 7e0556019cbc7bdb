"""Time the ABX engine on a synthetic set the size of LibriSpeech dev-clean and print a Markdown table.

The set: 2.7 k utterances of 40 speakers (7.2 s on average, 5.4 h), 768-d features at 50 Hz, about
20 k triphone items with a Zipf-like phone and context distribution. Features are phone prototypes plus
a speaker offset plus noise, so the error rate is neither 0 nor 50 %. Each condition (within / across
speaker, within context) is timed separately, including the engine's feature loading.

    .venv/bin/python bench/abx.py                      # full size, about 3 GB of features in a temp folder
    .venv/bin/python bench/abx.py --utterances 300 --items 2000   # quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from learn2diss.eval.abx import AbxSettings, item_frames, score_abx

PHONES = ["AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"]


def make_dataset(root: Path, utterances: int, speakers: int, items: int, dim: int, seed: int) -> Path:
    """Write ``root/features/*.npy`` and ``root/synthetic.item``; return the item file path."""
    rng = np.random.default_rng(seed)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    zipf = 1.0 / np.arange(1, len(PHONES) + 1)
    zipf /= zipf.sum()
    prototypes = rng.standard_normal((len(PHONES), dim)).astype(np.float32)
    speaker_shift = 0.8 * rng.standard_normal((speakers, dim)).astype(np.float32)
    per_utt = items / utterances
    lines = ["#file onset offset #phone prev-phone next-phone speaker"]
    for u in range(utterances):
        spk = u % speakers
        utt = f"{spk}-{u // speakers}-{u:04d}"
        seconds = float(np.clip(rng.normal(7.2, 3.0), 2.0, 20.0))
        frames = int(seconds * 50)
        x = rng.standard_normal((frames, dim)).astype(np.float32) + speaker_shift[spk]
        n_items = rng.poisson(per_utt)
        starts = np.sort(rng.uniform(0.05, seconds - 0.4, size=n_items))
        for onset in starts:
            offset = onset + rng.uniform(0.15, 0.35)
            phone, prev, nxt = rng.choice(len(PHONES), size=3, p=zipf)
            start, end = item_frames(onset, offset)
            x[start : end + 1] += 0.3 * prototypes[phone]
            lines.append(f"{utt} {onset:.4f} {offset:.4f} {PHONES[phone]} {PHONES[prev]} {PHONES[nxt]} s{spk}")
        np.save(features / f"{utt}.npy", x)
    item_file = root / "synthetic.item"
    item_file.write_text("\n".join(lines) + "\n")
    return item_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=2700)
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the synthetic set here (default: temp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="abx-bench-") as tmp:
        root = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        item_file = make_dataset(root, args.utterances, args.speakers, args.items, args.dim, args.seed)
        n_items = len(item_file.read_text().splitlines()) - 1
        make_s = time.perf_counter() - t0
        rows = []
        for mode in ("within", "across"):
            t0 = time.perf_counter()
            (score,) = score_abx(root / "features", item_file, AbxSettings(speaker_modes=(mode,)))
            rows.append((mode, time.perf_counter() - t0, score.error))

    print("| device | torch | threads | utterances | items | dim | set written in |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {platform.processor() or platform.machine()} ({os.cpu_count()} cpus) | {torch.__version__} | "
          f"{args.threads} | {args.utterances} | {n_items} | {args.dim} | {make_s:.0f} s |")
    print()
    print("| condition (context within) | time | ABX error |")
    print("|---|---|---|")
    for mode, seconds, error in rows:
        print(f"| {mode} speaker | {seconds:.1f} s ({seconds / 60:.1f} min) | {error:.2f} % |")


if __name__ == "__main__":
    main()
