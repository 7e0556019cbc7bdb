"""Run the joint stage over a grid of settings x seeds from one prepared run, evaluate every run with the fast
evaluations, and summarise: mean ± 95 % t-interval per metric and setting, a figure against lambda, raw rows.

Each (setting, seed) cell copies the prepared run (parent imported, frame targets, SimCLR h, utterance
clusters: the stages that do not depend on the joint settings), runs `learn2diss pretrain joint` with the
setting's overrides and `train.seed=S data.seed=S`, exports, and evaluates on each --splits of --corpus:
speaker-ID probes, speaker-verification EER and phone probes of both encoders, a per-frame speaker probe,
ABX within/across speaker, phone purity / PNMI, the PER of a linear CTC head on frame:last, speaker purity
and the feature-variance diagnostic of g. Validation speakers (`val`) are where settings are chosen; test
speakers (`test`) are reported separately and are never used for a choice. With --baseline (default
lambda-0), every other setting is also compared with it seed by seed: paired differences and their
intervals. --jobs 2 runs two cells at a time, each on one thread. A finished cell is skipped on a rerun; an
interrupted one resumes.

The grid is a YAML file of named settings, each a mapping of dotted config keys (as for `pretrain --set`):

    x: joint.club.weight          # the figure's x axis (required)
    settings:
      lambda-0:    {joint.club.weight: 0.0}
      lambda-1e-4: {joint.club.weight: 1.0e-4}
      lambda-1e-3: {joint.club.weight: 1.0e-3}

Outputs in --out: summary.md (tables per split), summary.csv, rows.csv (every number with setting, seed,
overrides, checkpoint, weight hash, git commit), metrics_vs_x.png, cells/<setting>/seed<S>.json.

Examples (on the files of `make demo`; not run: 12 settings x 3 seeds of the joint stage take about an hour on
2 cores; the second is the same grid with 20 joint steps per cell)::

    learn2diss study --grid study_club --seeds 0 1 2 --shared runs/demo/runs/l2d_shared \\
        --corpus runs/demo/corpus --config demo_l2d --out results/study-club
    learn2diss study --grid study_club --seeds 0 1 --shared runs/demo/runs/l2d_shared \\
        --corpus runs/demo/corpus --config demo_l2d --set joint.steps=20 --out results/study-short
    learn2diss study --grid study_club --seeds 0 1 2 --parent runs/demo/checkpoints/demo-parent \\
        --config demo_l2d --corpus runs/demo/corpus --out results/study-from-parent
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPLITS = ("val", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", required=True,
                        help="YAML file of named settings (see above), or a packaged grid's name (study_club)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of each setting (default 0 1 2)")
    parser.add_argument("--corpus", type=Path, required=True,
                        help="corpus in the demo corpus's layout (`learn2diss data synth --val-speakers N` or "
                             "any corpus with LibriSpeech-style/<split>, alignments/, splits/, abx/)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--shared", type=Path,
                        help="prepared run folder: frame-targets, utt-simclr and utt-targets done (the demo's "
                             "runs/demo/runs/l2d_shared)")
    source.add_argument("--parent", type=Path, help="parent checkpoint: prepare the run in WORK/shared first")
    parser.add_argument("--config", type=Path,
                        help="joint-stage config, a packaged name or a YAML path (default: the prepared run's "
                             "config.yaml); its model must be the prepared run's")
    parser.add_argument("--data", type=Path,
                        help="training manifest (default: the prepared run's; with --parent: built from "
                             "the corpus's train split in WORK/manifest)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="evaluation splits (default: val test)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every cell (repeatable), e.g. --set joint.steps=200")
    parser.add_argument("--out", type=Path, default=Path("results/study"), help="tables, figure, rows")
    parser.add_argument("--work-dir", type=Path, help="run folders and checkpoints (default runs/<--out name>)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--purity-clusters", type=int, default=100, help="frame k-means K for PNMI (default 100)")
    parser.add_argument("--probe-max-frames", type=int, default=20_000, help="frames per phone-probe split")
    parser.add_argument("--probe-test-fraction", type=float, default=0.5,
                        help="share of each speaker's utterances the probes are scored on (default 0.5)")
    parser.add_argument("--asr-train-utterances", type=int, default=300,
                        help="train-split utterances of the phone-recognition head (PER of frame:last); 0: no PER")
    parser.add_argument("--baseline",
                        help="setting the others are compared with, seed by seed (paired differences with their "
                             "95 %% interval; default lambda-0 when the grid has it)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells at a time, each in its own process on one thread (default 1: one cell at a time "
                             "in this process); 2 on a 2-core machine")


def _prepared_run(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path]:
    """(prepared run, joint config, manifest): checked, or made from --parent."""
    from learn2diss.study.cells import run_command
    from learn2diss.study.grid import StudyError

    if args.parent is not None:
        if args.config is None:
            raise StudyError("--parent needs --config (the Learn2Diss config to prepare and train with)")
        manifest = args.data
        if manifest is None:
            manifest = work / "manifest"
            if not (manifest / "train.tsv").is_file():
                run_command("data", "manifest", "--root", args.corpus / "LibriSpeech-style", "--subsets", "train",
                     "--out", manifest)
        shared = work / "shared"
        for stage in ("frame-targets", "utt-simclr", "utt-targets"):
            run_command("pretrain", stage, "--config", args.config, "--parent", args.parent, "--data", manifest,
                 "--out", shared, "--resume", "--device", args.device, *[a for s in args.set for a in ("--set", s)])
        return shared, args.config, manifest
    shared = args.shared
    missing = [s for s in ("frame_targets", "utt_simclr", "utt_targets") if not (shared / s / "done.json").is_file()]
    if missing:
        raise StudyError(f"--shared {shared}: not a prepared run (no {', '.join(f'{m}/done.json' for m in missing)}); "
                         "run `learn2diss pretrain frame-targets|utt-simclr|utt-targets` into it, or pass --parent")
    manifest = args.data
    if manifest is None:
        from learn2diss.io import read_json

        manifest = Path(read_json(shared / "run.json", "run record")["manifest"])
    return shared, args.config or shared / "config.yaml", manifest


def run(args: argparse.Namespace) -> int:
    from learn2diss.runlock import hold

    with hold(args.out):  # one study per --out; each cell's run folder is held by its own `pretrain`
        return _study(args)


def _study(args: argparse.Namespace) -> int:
    from learn2diss.io import write_json, write_text
    from learn2diss.pretrain.config import read_config
    from learn2diss.schema import apply_overrides, check_device, format_override
    from learn2diss.study.cells import Cell, CellTime, StudyInputs, StudyPaths, run_cell, run_cells
    from learn2diss.study.evaluate import CorpusSplit, EvalSizes
    from learn2diss.study.grid import StudyError, check_grid, read_grid
    from learn2diss.study.summary import (
        markdown_difference_tables,
        markdown_tables,
        paired_differences,
        plot_metrics,
        raw_rows,
        summarise,
    )

    grid = read_grid(args.grid)
    for split in args.splits:
        CorpusSplit(args.corpus, split).check()
    paths = StudyPaths(args.out, args.work_dir or Path("runs") / args.out.name)
    shared, config, manifest = _prepared_run(args, paths.work)
    check_grid(grid, apply_overrides(read_config(config), args.set))
    inputs = StudyInputs(config, manifest, shared, args.corpus, tuple(args.set), check_device(args.device))
    sizes = EvalSizes(args.purity_clusters, args.probe_max_frames, args.probe_test_fraction, args.asr_train_utterances)
    cells = [Cell(setting, seed) for setting in grid.settings for seed in args.seeds]
    names = [s.name for s in grid.settings]
    baseline = args.baseline or ("lambda-0" if "lambda-0" in names else None)
    if baseline is not None and baseline not in names:
        raise StudyError(f"--baseline {baseline}: not a setting of the grid ({', '.join(names)})")
    todo = [c for c in cells if not paths.cell_file(c).is_file()]
    print(f"[study] {len(cells)} cells, {len(cells) - len(todo)} done before; running {len(todo)}, "
          f"{max(1, args.jobs)} at a time", flush=True)
    finished = 0

    def report(cell: Cell, record: dict, took: CellTime) -> None:
        nonlocal finished
        finished += 1
        print(f"[study {finished}/{len(todo)}] {cell.name}: {took.wall:.0f} s wall, {took.cpu:.0f} s CPU", flush=True)

    run_cells(todo, inputs, paths, tuple(args.splits), sizes, grid.x, args.jobs, done=report)
    records = [run_cell(c, inputs, paths, tuple(args.splits), sizes, grid.x) for c in cells]  # all read back
    rows = raw_rows(records)
    summary = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "rows.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    groups = {s.name: " ".join(format_override(*o) for o in s.without(grid.x)) or "base config" for s in grid.settings}
    figure = plot_metrics(summary, groups, grid.x, args.out / "metrics_vs_x.png")
    differences = ""
    if baseline is not None:
        diffs = paired_differences(rows, baseline)
        diffs.to_csv(args.out / "differences.csv", index=False)
        differences = ("Each setting minus `" + baseline + "` with the same seed (same initialisation, batch order "
                       "and masks): mean ± half-width of the paired 95 % t interval; `*`: the interval excludes 0, "
                       "without it the difference is not resolved.\n\n"
                       + markdown_difference_tables(diffs, [n for n in names if n != baseline], baseline))
    text = "\n".join([
        "# Learn2Diss study", "",
        f"Grid `{args.grid}`, seeds {' '.join(map(str, args.seeds))}, joint config `{config}`, prepared run "
        f"`{shared}`, corpus `{args.corpus}`" + (f", common overrides `{' '.join(args.set)}`" if args.set else "")
        + ". Mean ± half-width of the 95 % Student t interval over seeds (n seeds per setting); percent except "
        "the variances. Choose on validation speakers; test speakers are reported, not chosen on.", "",
        *(f"- `{s.name}`: {' '.join(f'`{o}`' for o in s.arguments()) or 'the config as it is'}" for s in grid.settings),
        "", markdown_tables(summary, names), differences,
        f"Figure: [{figure.name}]({figure.name}); raw rows with provenance: rows.csv"
        + ("; paired differences: differences.csv" if differences else "") + ".", "",
    ])
    write_json(args.out / "study.json", {"grid": str(args.grid), "seeds": args.seeds, "splits": args.splits,
                                         "config": str(config), "shared": str(shared), "corpus": str(args.corpus),
                                         "common_overrides": args.set})
    write_text(args.out / "summary.md", text)
    print("\n" + text)
    return 0
