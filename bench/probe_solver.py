"""The phone probe's solver: scikit-learn's lbfgs (300 iterations, the probes before issue 10) against the
project's torch L-BFGS (:func:`learn2diss.eval.probes.linear_probe_accuracy`), on cached features.

Same objective (standardised multinomial logistic regression, L2, C = 1), same frames (the probes'
speaker-stratified split, 20 k frames per side); prints accuracy and CPU seconds of each, ``--repeats``
times, on one torch thread.

    .venv/bin/python bench/probe_solver.py --features runs/demo/features/demo-parent/test/frame_last \\
        --corpus runs/demo/corpus --split test
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from learn2diss.eval.alignments import read_alignments
from learn2diss.eval.commands.common import read_speakers
from learn2diss.eval.features import load_features
from learn2diss.eval.probes import linear_probe_accuracy, sample_frames, speaker_stratified_split


def sklearn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """The probe before issue 10: scikit-learn StandardScaler + LogisticRegression(max_iter=300)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, random_state=0))
    probe.fit(train_x, train_y)
    return 100.0 * float((probe.predict(test_x) == test_y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True, help="folder of <utt>.npy per-frame features")
    parser.add_argument("--corpus", type=Path, required=True, help="demo-layout corpus (alignments/, splits/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-frames", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*(lbfgs|ITERATIONS).*")
    alignments = read_alignments(args.corpus / "alignments" / f"{args.split}.tsv")
    utts = sorted(alignments)
    speakers = read_speakers(args.corpus / "splits" / f"{args.split}.tsv", utts)
    train, test = speaker_stratified_split(utts, speakers, 0.5, 0)
    feats = load_features(args.features, utts)
    phones = {u: alignments[u].frame_labels(len(feats[u])) for u in utts}
    train_x, train_y = sample_frames([feats[u] for u in train], [phones[u] for u in train], args.max_frames, 0)
    test_x, test_y = sample_frames([feats[u] for u in test], [phones[u] for u in test], args.max_frames, 1)
    print(f"{args.features}: {train_x.shape[0]} train / {test_x.shape[0]} test frames, {train_x.shape[1]}-d, "
          f"{len(set(train_y))} phones")
    for _ in range(args.repeats):
        for name, fit in (("scikit-learn lbfgs, 300 it.", sklearn_accuracy),
                          ("torch L-BFGS, 100 it.", linear_probe_accuracy)):
            start = time.process_time()
            accuracy = fit(train_x, train_y, test_x, test_y)
            print(f"  {name:28s} accuracy {accuracy:6.2f} %   CPU {time.process_time() - start:6.2f} s", flush=True)


if __name__ == "__main__":
    main()
