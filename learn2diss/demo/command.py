"""The whole method end to end on the demo corpus, on a CPU, sized for 15 minutes on 2 idle cores: `make demo`.

Builds the synthetic demo corpus (train, unseen validation and unseen test speakers), takes the small
HuBERT-style parent that ships with the package (iteration 1: masked prediction of MFCC k-means targets, trained
by `learn2diss pretrain --config demo_parent` on the corpus's training speakers; --train-parent trains it
again), scores the MFCC floors with the models' code, prepares Learn2Diss from the parent once (frame targets,
SimCLR of h, utterance clusters) and runs its joint stage with the MI penalty (the lambda of the packaged config
demo_l2d) and without it (lambda = 0), with the same seeds for both, as the cells of a `learn2diss study`. The
floors, the parent and every run are evaluated on the unseen test speakers (speaker verification EER,
speaker-ID and phone probes of both encoders, a per-frame speaker probe, ABX within/across speaker, PNMI,
speaker purity, and the phone error rate of a linear CTC head on the frozen frame features), and the Table 5
directions are reported as the mean of the same-seed differences (lambda > 0 minus lambda = 0) with their
paired 95 % intervals: "not resolved" where the interval contains 0. Tables and figures go to --out and the
summary is printed. A rerun skips finished stages; an interrupted one resumes. docs/demo.md explains every
choice and the measured numbers.

Examples::

    learn2diss demo          # results/demo/summary.md, work files in runs/demo (not run: 15 minutes on 2 cores)
    learn2diss demo --quick  # every stage, table and figure, no meaning (not run: the test runs it at runs/demo)
    learn2diss demo --device cuda --out results/demo-gpu --work-dir runs/demo-gpu  # (not run: needs a GPU)

--quick takes about a minute on 2 idle cores (its stages 48 s wall, 47 s CPU at commit ba7e719; 10 minutes and
more on a machine whose cores other jobs keep busy); --asr adds two CTC fine-tunes (learn2diss/demo/asr.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="reduced demo (10 speakers x 10 utterances, a few steps): checks the plumbing, not the method")
    parser.add_argument("--out", type=Path, help="tables and figures (default results/demo, or results/demo-quick)")
    parser.add_argument("--work-dir", type=Path,
                        help="corpus, runs, checkpoints, feature caches (default runs/demo, or runs/demo-quick)")
    parser.add_argument("--configs", type=Path,
                        help="folder with demo_parent.yaml and demo_l2d.yaml (default: the packaged configs)")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation (default cpu)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes: corpus synthesis, and Learn2Diss runs side by side, each on one thread "
                             "(default: one per core; with --device cuda the runs go one at a time)")
    parser.add_argument("--train-parent", action="store_true",
                        help="train the parent (config demo_parent, from random weights, on the corpus's train "
                             "split) instead of using the shipped one; also writes the float16 copy that ships")
    parser.add_argument("--asr", action="store_true",
                        help="also fine-tune the parent and the MI run with letter CTC and report their WER without "
                             "and with a 4-gram (learn2diss/demo/asr.py; about as long as the rest of the demo)")


def _check_settings(work: Path, settings: dict) -> None:
    from learn2diss.demo.pipeline import DemoError
    from learn2diss.io import read_json, write_json

    path = work / "demo.json"
    if path.is_file():
        stored = read_json(path, "demo settings")
        if stored != settings:
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            raise DemoError(f"{work} holds a demo run with other settings ({', '.join(changed)}): pass another "
                            "--work-dir (and --out), or delete that folder")
    else:
        write_json(path, settings)


def _context(paths, settings) -> str:
    """One paragraph on what was run: corpus size, parent and joint steps, lambda, seeds."""
    from learn2diss.demo.plan import GRID, PARENT
    from learn2diss.eval.results import checkpoint_hash
    from learn2diss.io import read_json, read_yaml
    from learn2diss.study.cells import config_value

    corpus = read_json(paths.corpus / "corpus.json", "corpus summary")
    splits = corpus["splits"]
    hours = ", ".join(f"{name} {info['speakers']} speakers {info['hours']:.2f} h" for name, info in splits.items())
    stored = read_yaml(paths.checkpoint(PARENT) / "config.yaml", "checkpoint config")
    if settings.train_parent:
        steps = read_yaml(paths.run("parent") / "config.yaml", "run config")["joint"]["steps"]
        how = f"trained here (`--train-parent`), {steps} steps from random weights on the train split"
    else:
        extra = stored.get("extra", {})
        how = (f"the shipped one ({extra.get('steps')} steps from random weights on the train split of this corpus, "
               f"by `{extra.get('command')}`, commit {extra.get('git_commit')}; hash {checkpoint_hash(paths.checkpoint(PARENT))})")
    l2d = read_yaml(paths.run("l2d_shared") / "config.yaml", "run config")
    lam = config_value(paths.config("demo_l2d"), list(settings.l2d_overrides), GRID.x)
    steps = config_value(paths.config("demo_l2d"), list(settings.l2d_overrides), "joint.steps")
    return (f"Demo corpus: {hours} (validation and test speakers unseen in training; the demo evaluates on the "
            f"test speakers and chooses nothing). Parent: HuBERT iteration 1 (MFCC k-means, K = "
            f"{stored['model']['frame']['num_targets']}, front end trained), {how}. "
            f"Learn2Diss: N = {l2d['model']['frame']['num_frozen_layers']} frozen + M = "
            f"{l2d['model']['parent']['num_layers'] - l2d['model']['frame']['num_frozen_layers']} trainable layers, "
            f"{l2d['utt_simclr']['steps']} SimCLR steps, {steps} joint steps, λ = 0 against λ = {lam:g} "
            f"(config demo_l2d), seeds {', '.join(map(str, settings.seeds))} for both (`train.seed` = "
            "`data.seed`: a λ = 0 and a λ > 0 run share their initialisation, batch order and masks).")


def _figures(paths, settings) -> list[Path]:
    """Embedding projections (the parent and each lambda's first seed) and the training curves."""
    import numpy as np

    from learn2diss.demo.plan import EVAL_SPLIT, GRID, PARENT
    from learn2diss.demo.plots import plot_embeddings, plot_training_curves
    from learn2diss.demo.report import SETTING_LABELS
    from learn2diss.eval.commands.common import read_speakers
    from learn2diss.eval.features import load_features, pool_utterance

    figures = paths.out / "figures"
    first = {s.name: f"{s.name}-seed{settings.seeds[0]}" for s in GRID.settings}
    out = []
    for setting, name in ((PARENT, PARENT), *first.items()):
        folder = paths.study.features(name) / EVAL_SPLIT
        utts = sorted(p.stem for p in (folder / "utt_embedding").glob("*.npy"))
        speakers = read_speakers(paths.corpus / "splits" / f"{EVAL_SPLIT}.tsv", utts)
        panels = {title: np.stack([pool_utterance(a) for a in load_features(folder / spec, utts).values()])
                  for title, spec in (("utterance encoder h: z^L", "utt_embedding"),
                                      ("frame encoder g: last layer, mean over frames", "frame_last"))}
        out.append(plot_embeddings(panels, [speakers[u] for u in utts],
                                   f"{SETTING_LABELS[setting]}: test utterances (t-SNE)", figures / f"embeddings_{name}.png"))
    joints = {f"{SETTING_LABELS[s]}, seed {settings.seeds[0]}": paths.work / "runs" / name / "joint" / "metrics.jsonl"
              for s, name in first.items()}
    out.append(plot_training_curves(paths.run("parent") / "joint" / "metrics.jsonl",
                                    paths.run("l2d_shared") / "utt_simclr" / "metrics.jsonl", joints,
                                    figures / "training_curves.png"))
    return out


def append_section(path: Path, summary: str, section: str) -> str:
    """The summary with ``section`` added at its end (written back to ``path``)."""
    from learn2diss.io import write_text

    summary = summary.rstrip("\n") + "\n\n" + section
    write_text(path, summary)
    return summary


def run(args: argparse.Namespace) -> int:
    # OpenMP threads spin while they wait; beside another CPU-bound job on a 2-core machine that made a joint step
    # 4-5x slower (docs/demo.md, "Time"). Read when torch loads, so only effective from the console command.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from learn2diss.demo import pipeline as p
    from learn2diss.demo.plan import FULL, QUICK, SETTING_TITLES, DemoPaths
    from learn2diss.demo.report import read_records, write_report
    from learn2diss.schema import check_device

    settings = QUICK if args.quick else FULL
    if args.train_parent:
        settings = dataclasses.replace(settings, train_parent=True)
    suffix = "-quick" if args.quick else ""
    paths = DemoPaths(work=args.work_dir or Path(f"runs/demo{suffix}"), out=args.out or Path(f"results/demo{suffix}"),
                      configs=args.configs)
    for name in ("demo_parent", "demo_l2d"):
        paths.config(name)  # fail early when a config is missing
    paths.work.mkdir(parents=True, exist_ok=True)
    _check_settings(paths.work, settings.to_dict())
    dev = check_device(args.device)
    cells = p.cells(settings)
    by_name = {f"cell-{c.name}": c for c in cells}
    jobs = max(1, min(args.jobs, len(cells))) if dev == "cpu" else 1
    stage = p.StageRunner(paths, total=7 + len(cells) + args.asr)
    stage("corpus", "demo corpus + manifest", lambda: p.build_corpus(paths, settings, args.jobs))
    stage("parent", "parent: HuBERT iteration 1 (MFCC targets), " + ("trained" if settings.train_parent else
          "the shipped one"), lambda: p.pretrain_parent(paths, settings, dev))
    stage("floors", "MFCC floors: evaluations", lambda: p.evaluate_floors(paths, settings))
    stage("l2d-shared", "Learn2Diss preparation (targets, SimCLR, clusters)", lambda: p.prepare_l2d(paths, settings, dev))
    stage.group("cells", f"Learn2Diss joint + evaluations: {len(cells)} runs, {jobs} at a time"
                + (" (one thread each)" if jobs > 1 else ""),
                [(name, f"{SETTING_TITLES[c.setting.name]}, seed {c.seed}") for name, c in by_name.items()],
                lambda todo, done: p.train_and_evaluate(paths, settings, dev, [by_name[n] for n in todo], jobs,
                                                        lambda cell, took: done(f"cell-{cell.name}", took)))
    stage("parent-eval", "parent: evaluations", lambda: p.evaluate_parent(paths, settings, dev))
    figures: list[Path] = []
    stage("figures", "figures: embeddings, training curves", lambda: figures.extend(_figures(paths, settings)))
    if not figures:  # the stage was cached: the files are there
        figures = sorted((paths.out / "figures").glob("*.png"))
    if args.asr:
        from learn2diss.demo.asr import asr_section, run_asr

        stage("asr-ctc", "speech recognition: CTC fine-tuning, 4-gram decoding (--asr)",
              lambda: run_asr(paths, settings, dev))
    records = read_records(paths.out, [paths.study.cell_file(c) for c in cells])
    summary = write_report(paths.out, records, stage.times, _context(paths, settings), figures)
    if args.asr:
        summary = append_section(paths.out / "summary.md", summary, asr_section(paths, settings))
    print("\n" + summary)
    print(f"tables and figures in {paths.out}; summary: {paths.out / 'summary.md'}")
    return 0
