"""A demo parent against the MFCC floors, layer by layer, on the demo corpus's unseen speakers.

Every row is scored by the demo's own code on the same frames and items
(:func:`learn2diss.study.evaluate.score_frame_features`: speaker-ID of mean-pooled features, a per-frame
speaker probe, speaker-verification EER, the linear phone probe, ABX within/across speaker, PNMI; and the
PER of the demo's linear CTC head, :mod:`learn2diss.eval.phone_recognition`). Rows: MFCC-20, MFCC-39 (the
parent's targets' features), then each checkpoint's ``frame:N`` (N = 0: the input of layer 1).

    .venv/bin/python bench/demo_parent.py --corpus runs/demo/corpus --work /tmp/parent-bench \\
        --checkpoint shipped=learn2diss/demo/parent --splits val test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from learn2diss.data.synth.phones import SILENCE
from learn2diss.demo.floors import FLOORS, write_mfcc_features
from learn2diss.eval.alignments import read_alignments
from learn2diss.eval.features import (
    FeatureSpec,
    extract_features,
    find_audio,
    frame_shift,
    load_features,
)
from learn2diss.eval.phone_recognition import HeadSettings, phone_error_rate
from learn2diss.eval.tables import markdown_table
from learn2diss.study.evaluate import CorpusSplit, EvalSizes, SplitLabels, score_frame_features
from learn2diss.upstream.checkpoints import load_model

COLUMNS = {"probes/frame/phone_acc": "phone probe ↑", "abx/within/abx_error": "ABX within ↓",
           "abx/across/abx_error": "ABX across ↓", "per": "PER ↓", "probes/frame/speaker_id_acc": "speaker-ID ↓",
           "probes/frame/speaker_frame_acc": "speaker per frame", "verification/frame/eer": "speaker EER",
           "purity/frame/pnmi": "PNMI ↑"}


def asr_utterances(corpus: Path, count: int) -> list[str]:
    utts = sorted(read_alignments(corpus / "alignments" / "train.tsv"))
    return utts[:: max(1, len(utts) // count)][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="feature caches")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--layers", type=int, nargs="*", help="frame layers (default: all)")
    parser.add_argument("--asr-utterances", type=int, default=300)
    parser.add_argument("--out", type=Path, help="CSV of every number")
    parser.add_argument("--table", type=Path, help="print the tables of this CSV (from --out) and stop")
    args = parser.parse_args()
    if args.table:
        print_tables(pd.read_csv(args.table), args.splits)
        return

    sizes = EvalSizes()
    train_utts = asr_utterances(args.corpus, args.asr_utterances)
    train_al = read_alignments(args.corpus / "alignments" / "train.tsv")
    sources: list[tuple[str, str, object]] = [(floor, floor, None) for floor in FLOORS]
    models = {}
    for item in args.checkpoint:
        name, path = item.split("=", 1)
        models[name] = load_model(path).eval()
        layers = args.layers if args.layers is not None else range(models[name].config.parent.num_layers + 1)
        sources += [(f"{name} frame:{n}", name, n) for n in layers]
    conv = next(iter(models.values())).config.parent.conv_layers if models else [[128, 40, 20], [128, 16, 16]]
    shift = frame_shift(next(iter(models.values()))) if models else 0.02
    rows = []
    for split_name in args.splits:
        split = CorpusSplit(args.corpus, split_name)
        test_al = read_alignments(split.alignments)
        utts = sorted(test_al)
        phones = {u: [p for p in a.phones if p != SILENCE] for al in (train_al, test_al) for u, a in al.items()}
        for label, name, layer in sources:
            start = time.process_time()
            folder = args.work / name.replace(" ", "_")
            specs = {}
            for part, which, names in ((split_name, split.audio, utts), ("asr-train", args.corpus / "LibriSpeech-style" / "train", train_utts)):
                target = folder / part / (f"frame_{layer}" if layer is not None else "frame_last")
                audio = find_audio(which, names)
                if layer is None:
                    write_mfcc_features(name, audio, conv, target)
                else:
                    spec = FeatureSpec.parse(f"frame:{layer}")
                    extract_features(models[name], audio, [spec], {str(spec): target}, progress=False)
                specs[part] = target
            frames = {u: len(a) for u, a in load_features(specs[split_name], utts).items()}
            labels = SplitLabels.read(split, frames, shift, sizes, 0)
            for m in score_frame_features(specs[split_name], split, labels, shift, sizes, spec="frame"):
                rows.append({"split": split_name, "features": label, "metric": f"{m.eval}/{m.condition}/{m.metric}",
                             "value": m.value})
            per, _ = phone_error_rate(load_features(specs["asr-train"], train_utts), phones,
                                      load_features(specs[split_name], utts), phones, HeadSettings())
            rows.append({"split": split_name, "features": label, "metric": "per", "value": per})
            print(f"{split_name} {label}: {time.process_time() - start:.0f} CPU-s", flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    print_tables(table, args.splits)


def print_tables(table: pd.DataFrame, splits: list[str]) -> None:
    """One Markdown table per split: a row per feature set (in the order measured), a column per measure."""
    for split_name in splits:
        these = table[table["split"] == split_name]
        wide = these.pivot(index="features", columns="metric", values="value")
        wide = wide.reindex(list(dict.fromkeys(these["features"])))[[c for c in COLUMNS if c in wide.columns]]
        print(f"\n{split_name} speakers (%)\n")
        print(markdown_table(["features", *(COLUMNS[c] for c in wide.columns)],
                             [[name, *(f"{v:.1f}" for v in row)] for name, row in wide.iterrows()]))


if __name__ == "__main__":
    main()
