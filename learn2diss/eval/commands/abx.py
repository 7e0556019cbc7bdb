"""ZeroSpeech 2021 ABX error rate (Table 3) of a checkpoint's 50 Hz frame features.

Extracts the chosen representation for the utterances of an item file (cached under --work-dir and
resumed), scores within- and across-speaker ABX with zerospeech-libriabx2 (angular distance + DTW,
max 10 items per group, max 5 X speakers, seed 3459; the frame shift is the checkpoint's conv stride over
the sample rate, 0.02 s, or --frame-shift for precomputed features) and merges the error rates into
RESULTS/abx.csv.

Examples (on the files of `make demo`)::

    learn2diss eval abx --checkpoint runs/demo/checkpoints/lambda-default-seed0 --item runs/demo/corpus/abx/test.item \\
        --audio runs/demo/corpus/LibriSpeech-style/test --dataset test
    learn2diss extract --checkpoint runs/demo/checkpoints/demo-parent --audio runs/demo/corpus/LibriSpeech-style/test \\
        --features frame:2 --out runs/features-parent
    learn2diss eval abx --features-dir runs/features-parent/frame_2 --item runs/demo/corpus/abx/test.item \\
        --dataset test --model-name parent-layer2

On ZeroSpeech 2021 with the paper's checkpoints (not run: needs the ZeroSpeech 2021 data and a trained L2D-H12)::

    learn2diss eval abx --checkpoint ckpt/l2d_h12 --zr2021 zerospeech2021 --model-name L2D-H12
    learn2diss eval abx --checkpoint ckpt/l2d_h12 --item zerospeech2021/phonetic/dev-clean/dev-clean.item \\
        --audio zerospeech2021/phonetic/dev-clean --model-name L2D-H12
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from learn2diss.errors import MissingInputError, UsageError
from learn2diss.eval.commands.common import add_model_arguments, open_source

ZR2021_SETS = ("dev-clean", "dev-other", "test-clean", "test-other")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, features_default="frame:last")
    parser.add_argument("--item", type=Path, help="ZeroSpeech .item file (7 columns)")
    parser.add_argument("--audio", type=Path, help="folder with the item file's utterances (.wav/.flac, searched "
                                                   "recursively)")
    parser.add_argument("--zr2021", type=Path, metavar="ROOT",
                        help="ZeroSpeech 2021 dataset root: runs ROOT/phonetic/<set> with <set>.item for each --sets")
    parser.add_argument("--sets", nargs="+", default=list(ZR2021_SETS), choices=ZR2021_SETS,
                        help="ZeroSpeech 2021 sets for --zr2021 (default: all four)")
    parser.add_argument("--dataset", help="dataset name in the results (default: the item file's name)")
    parser.add_argument("--speaker-mode", choices=("within", "across", "all"), default="all")
    parser.add_argument("--context-mode", choices=("within", "any"), default="within",
                        help="within = ZeroSpeech 2021 triphone ABX (the paper); any = abxLS context-free")
    parser.add_argument("--distance", choices=("cosine", "angular", "euclidean", "kl_symmetric"), default="cosine",
                        help="cosine and angular are the same (angle / pi)")
    parser.add_argument("--frame-shift", type=float, default=None,
                        help="seconds per frame of --features-dir features (default 0.02: 50 Hz, the base parents' "
                             "stride); with --checkpoint it is the checkpoint's conv stride over the sample rate")
    parser.add_argument("--max-size-group", type=int, default=10)
    parser.add_argument("--max-x-across", type=int, default=5)
    parser.add_argument("--seed", type=int, default=3459)


def _zr2021_jobs(root: Path, sets: list[str]) -> list[tuple[str, Path, Path]]:
    jobs = []
    for name in sets:
        folder = root / "phonetic" / name
        candidates = [folder / f"{name}.item", root / "phonetic" / f"{name}.item"]
        item = next((c for c in candidates if c.is_file()), None)
        if not folder.is_dir() or item is None:
            raise MissingInputError(
                f"ZeroSpeech 2021 set {name}: need the folder {folder} and the item file {candidates[0]}; "
                "restrict the sets with --sets (e.g. --sets dev-clean dev-other)")
        jobs.append((name, item, folder))
    return jobs


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.abx import AbxSettings, read_item_file, score_abx
    from learn2diss.eval.features import FeatureSpec, extract_features, find_audio
    from learn2diss.eval.results import ResultRow, append_rows

    if args.zr2021:
        jobs = _zr2021_jobs(args.zr2021, args.sets)
    elif args.item:
        jobs = [(args.dataset or args.item.stem, args.item, args.audio)]
    else:
        raise UsageError("give --item FILE (with --audio DIR or --features-dir DIR) or --zr2021 ROOT")
    spec = FeatureSpec.parse(args.features)
    if not spec.per_frame:
        raise UsageError(f"--features {spec}: ABX needs per-frame features, not the pooled utterance embedding")
    modes = ("within", "across") if args.speaker_mode == "all" else (args.speaker_mode,)
    source = open_source(args)
    shift = source.frame_shift if args.frame_shift is None else args.frame_shift
    if source.model is not None and not math.isclose(shift, source.frame_shift):
        raise UsageError(f"--frame-shift {args.frame_shift}: the checkpoint {args.checkpoint} has {source.frame_shift} s "
                         "frames (its conv stride); leave --frame-shift out with --checkpoint")
    settings = AbxSettings(frame_shift=shift, distance=args.distance, speaker_modes=modes,
                           context_mode=args.context_mode, max_size_group=args.max_size_group,
                           max_x_across=args.max_x_across, seed=args.seed)
    out = args.results / "abx.csv"
    for dataset, item, audio_dir in jobs:
        if source.model is not None:
            if audio_dir is None:
                raise UsageError("--checkpoint needs --audio DIR with the item file's utterances")
            utterances = sorted({it.file for it in read_item_file(item)})
            folder = source.feature_dir(args.work_dir, dataset, str(spec))
            extract_features(source.model, find_audio(audio_dir, utterances), [spec], {str(spec): folder},
                             device=source.device)
        else:
            folder = args.features_dir / dataset if args.zr2021 else args.features_dir
        print(f"ABX on {dataset} ({item}) ...", file=sys.stderr)
        scores = score_abx(folder, item, settings, progress=True)
        metric = "abx_error" if args.context_mode == "within" else "abx_error_any_context"
        details = (f"zrc_abx2 distance={args.distance} frame_shift={shift:g} max_size_group="
                   f"{args.max_size_group} max_x_across={args.max_x_across} seed={args.seed}")
        append_rows(out, [
            ResultRow("abx", source.name, dataset, s.speaker_mode, metric, s.error, variant=args.variant,
                      features=str(spec), checkpoint=source.checkpoint, checkpoint_hash=source.checkpoint_hash,
                      config=source.config, details=details)
            for s in scores
        ])
        for s in scores:
            print(f"{source.name} {dataset} {s.speaker_mode}-speaker {s.context_mode}-context ABX error: "
                  f"{s.error:.2f} %")
    print(f"results merged into {out}", file=sys.stderr)
    return 0
