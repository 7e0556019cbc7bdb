"""The whole method end to end on the demo corpus, on a CPU, in about 10 minutes on 2 cores: `make demo`.

Builds the synthetic demo corpus, pretrains a small HuBERT-style parent on it (iteration 1: masked
prediction of MFCC k-means targets), runs Learn2Diss from that parent twice through the ordinary
`learn2diss pretrain` stages, with the MI penalty (lambda > 0, configs/demo_l2d.yaml) and without it
(lambda = 0, configs/demo_l2d_no_mi.yaml), evaluates the three models (phone/speaker purity, linear
speaker-ID and phone probes of both encoders, ABX within/across speaker on unseen test speakers, a short
CTC fine-tune decoded with a 4-gram of the training transcripts) and writes the tables and figures to
--out, then prints the summary. A rerun skips finished stages; an interrupted one resumes. docs/demo.md
explains every choice and the measured numbers.

Examples::

    learn2diss demo                       # results/demo/summary.md; work files in runs/demo
    learn2diss demo --quick               # a few speakers and steps: every table and figure in about a minute
    learn2diss demo --device cuda --out results/demo-gpu --work-dir runs/demo-gpu
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="reduced demo (8 speakers x 10 utterances, a few steps): checks the plumbing, not the method")
    parser.add_argument("--out", type=Path, help="tables and figures (default results/demo, or results/demo-quick)")
    parser.add_argument("--work-dir", type=Path,
                        help="corpus, runs, checkpoints, feature caches (default runs/demo, or runs/demo-quick)")
    parser.add_argument("--configs", type=Path, default=DEFAULT_CONFIGS,
                        help="folder with demo_parent.yaml, demo_l2d.yaml, demo_l2d_no_mi.yaml (default: the "
                             "repository's configs/)")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation (default cpu)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="corpus synthesis processes")


def _check_settings(work: Path, settings: dict) -> None:
    from learn2diss.demo.pipeline import DemoError, write_json

    path = work / "demo.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != settings:
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            raise DemoError(f"{work} holds a demo run with other settings ({', '.join(changed)}): pass another "
                            "--work-dir (and --out), or delete that folder")
    else:
        write_json(path, settings)


def _context(paths, settings) -> str:
    """One paragraph on what was run: corpus size, parent and joint steps, lambda."""
    import yaml

    corpus = json.loads((paths.corpus / "corpus.json").read_text())
    splits = corpus["splits"]
    hours = ", ".join(f"{name} {info['hours']:.2f} h" for name, info in splits.items())
    parent = yaml.safe_load((paths.run("parent") / "config.yaml").read_text())
    mi = yaml.safe_load((paths.run("l2d_mi") / "config.yaml").read_text())
    no_mi = yaml.safe_load((paths.run("l2d_no_mi") / "config.yaml").read_text())
    return (f"Demo corpus: {settings.speakers} synthetic speakers ({settings.test_speakers} unseen in training, "
            f"used for every evaluation), {hours}. Parent: HuBERT iteration 1 (MFCC k-means, K = "
            f"{parent['model']['frame']['num_targets']}), {parent['joint']['steps']} steps from random weights. "
            f"Learn2Diss: N = {mi['model']['frame']['num_frozen_layers']} frozen + M = "
            f"{mi['model']['parent']['num_layers'] - mi['model']['frame']['num_frozen_layers']} trainable layers, "
            f"{mi['utt_simclr']['steps']} SimCLR steps, {mi['joint']['steps']} joint steps, "
            f"λ = {no_mi['joint']['club']['weight']:g} against λ = {mi['joint']['club']['weight']:g}.")


def _figures(paths) -> list[Path]:
    """Embedding projections (one per model) and the training curves."""
    import numpy as np

    from learn2diss.demo.plan import DATASET, MODELS
    from learn2diss.demo.plots import plot_embeddings, plot_training_curves
    from learn2diss.demo.report import LABELS
    from learn2diss.eval.commands.common import ModelSource, read_speakers
    from learn2diss.eval.features import load_features, pool_utterance

    figures = paths.out / "figures"
    out = []
    for model, _ in MODELS:
        source = ModelSource(model, "", "", "", None, "cpu")
        folders = {spec: source.feature_dir(paths.eval_work, DATASET, spec) for spec in ("utt:embedding", "frame:last")}
        utts = sorted(p.stem for p in folders["utt:embedding"].glob("*.npy"))
        speakers = read_speakers(paths.corpus / "splits" / "test.tsv", utts)
        panels = {name: np.stack([pool_utterance(a) for a in load_features(folders[spec], utts).values()])
                  for name, spec in (("utterance encoder h: z^L", "utt:embedding"),
                                     ("frame encoder g: last layer, mean over frames", "frame:last"))}
        out.append(plot_embeddings(panels, [speakers[u] for u in utts], f"{LABELS[model]}: test utterances (t-SNE)",
                                   figures / f"embeddings_{model}.png"))
    joints = {"λ = 0": paths.run("l2d_no_mi") / "joint" / "metrics.jsonl",
              "λ > 0": paths.run("l2d_mi") / "joint" / "metrics.jsonl"}
    out.append(plot_training_curves(paths.run("parent") / "joint" / "metrics.jsonl",
                                    paths.run("l2d_shared") / "utt_simclr" / "metrics.jsonl", joints,
                                    figures / "training_curves.png"))
    return out


def run(args: argparse.Namespace) -> int:
    # OpenMP threads spin while they wait; beside another CPU-bound job on a 2-core machine that made a joint step
    # 4-5x slower (docs/demo.md, "Time"). Read when torch loads, so only effective from the console command.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from learn2diss.demo import pipeline as p
    from learn2diss.demo.plan import FULL, L2D_MI, L2D_NO_MI, QUICK, DemoPaths
    from learn2diss.demo.report import write_report

    settings = QUICK if args.quick else FULL
    suffix = "-quick" if args.quick else ""
    paths = DemoPaths(work=args.work_dir or Path(f"runs/demo{suffix}"), out=args.out or Path(f"results/demo{suffix}"),
                      configs=args.configs)
    for name in ("demo_parent", "demo_l2d", "demo_l2d_no_mi"):
        paths.config(name)  # fail early when a config is missing
    paths.work.mkdir(parents=True, exist_ok=True)
    _check_settings(paths.work, settings.to_dict())
    dev = args.device
    stage = p.StageRunner(paths, total=11)
    stage("corpus", "demo corpus + manifest", lambda: p.build_corpus(paths, settings, args.jobs))
    stage("parent", "parent: HuBERT iteration 1 (MFCC targets)", lambda: p.pretrain_parent(paths, settings, dev))
    stage("l2d-shared", "Learn2Diss preparation (targets, SimCLR, clusters)", lambda: p.prepare_l2d(paths, settings, dev))
    stage("l2d-no-mi", "Learn2Diss joint, λ = 0", lambda: p.train_l2d(paths, settings, dev, L2D_NO_MI))
    stage("l2d-mi", "Learn2Diss joint, λ > 0", lambda: p.train_l2d(paths, settings, dev, L2D_MI))
    stage("lm", "4-gram of the training transcripts", lambda: p.build_language_model(paths, settings))
    stage("purity", "eval: phone and speaker purity", lambda: p.evaluate_purity(paths, settings, dev))
    stage("probes", "eval: speaker-ID and phone probes", lambda: p.evaluate_probes(paths, settings, dev))
    stage("abx", "eval: ABX within/across speaker", lambda: p.evaluate_abx(paths, dev))
    stage("ctc", "eval: CTC fine-tune + 4-gram decoding", lambda: p.evaluate_ctc(paths, settings, dev))
    figures: list[Path] = []
    stage("figures", "figures: embeddings, training curves", lambda: figures.extend(_figures(paths)))
    if not figures:  # the stage was cached: the files are there
        figures = sorted((paths.out / "figures").glob("*.png"))
    summary = write_report(paths.out, stage.times, _context(paths, settings), figures)
    print("\n" + summary)
    print(f"tables and figures in {paths.out}; summary: {paths.out / 'summary.md'}")
    return 0
