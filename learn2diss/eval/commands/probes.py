"""Linear speaker-ID and phone probes on frozen frame- and utterance-encoder features (Table 5 style).

For the frame encoder: speaker from mean-pooled --frame-features, phone from the same per frame. For
the utterance encoder: speaker from --utterance-features (the pooled embedding z^L by default), phone
from the per-frame --utterance-frame-features (ECAPA layer z^5 by default). A disentangled model has
low speaker accuracy on frames and low phone accuracy on the utterance encoder. Utterances are split per
speaker (--test-fraction held out); results are merged into RESULTS/probes.csv. The defaults are the demo's
protocol, so a demo checkpoint gives the values of its rows.csv.

Examples (on the files of `make demo`)::

    learn2diss eval probes --checkpoint runs/demo/checkpoints/lambda-default-seed0 \\
        --audio runs/demo/corpus/LibriSpeech-style/test --alignments runs/demo/corpus/alignments/test.tsv \\
        --speakers runs/demo/corpus/splits/test.tsv --dataset test
    learn2diss extract --checkpoint runs/demo/checkpoints/demo-parent --audio runs/demo/corpus/LibriSpeech-style/test \\
        --features frame:2 --out runs/features-parent
    learn2diss eval probes --features-dir runs/features-parent/frame_2 --alignments runs/demo/corpus/alignments/test.tsv \\
        --speakers runs/demo/corpus/splits/test.tsv --dataset test --model-name parent-layer2
"""

from __future__ import annotations

import argparse
import sys

from learn2diss.errors import UsageError
from learn2diss.eval.commands.common import (
    add_corpus_arguments,
    add_model_arguments,
    open_source,
    prepare_features,
    read_speakers,
)
from learn2diss.eval.probes import MAX_FRAMES, TEST_FRACTION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, features_default=None)
    add_corpus_arguments(parser)
    parser.add_argument("--frame-features", default="frame:last", help="frame-encoder features (default frame:last)")
    parser.add_argument("--utterance-features", default="utt:embedding",
                        help="utterance-encoder features for the speaker probe (default utt:embedding)")
    parser.add_argument("--utterance-frame-features", default="utt:5",
                        help="per-frame utterance-encoder features for the phone probe (default utt:5)")
    parser.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                        help=f"share of each speaker's utterances held out and scored (default {TEST_FRACTION}, as "
                             "the demo)")
    parser.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                        help=f"frames per phone-probe split, drawn at random (default {MAX_FRAMES}, as the demo)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.alignments import read_alignments
    from learn2diss.eval.features import FeatureSpec, load_features, pool_utterance
    from learn2diss.eval.probes import ProbeData, probe_encoder, speaker_stratified_split
    from learn2diss.eval.results import ResultRow, append_rows

    alignments = read_alignments(args.alignments, args.alignment_format, args.label_rate)
    utterances = sorted(alignments)[: args.max_utterances]
    dataset = args.dataset or args.alignments.stem
    speakers = read_speakers(args.speakers, utterances)
    source = open_source(args)
    frame_spec = FeatureSpec.parse(args.frame_features)
    encoders = {"frame": (frame_spec, frame_spec)}
    if source.model is not None:
        encoders["utterance"] = (FeatureSpec.parse(args.utterance_features),
                                 FeatureSpec.parse(args.utterance_frame_features))
    for name, (_, per_frame) in encoders.items():
        if not per_frame.per_frame:
            raise UsageError(f"{name} phone probe: {per_frame} is not a per-frame representation")
    specs = list(dict.fromkeys(spec for pair in encoders.values() for spec in pair))
    folders = prepare_features(source, args, dataset, utterances, specs)
    train, test = speaker_stratified_split(utterances, speakers, args.test_fraction, args.seed)

    rows = []
    for name, (pooled_spec, frame_spec_) in encoders.items():
        frames = load_features(folders[str(frame_spec_)], utterances)
        pooled = {u: pool_utterance(a) for u, a in load_features(folders[str(pooled_spec)], utterances).items()}
        phones = {u: alignments[u].frame_labels(len(frames[u]), source.frame_shift) for u in utterances}
        scores = probe_encoder(ProbeData(pooled, frames), train, test, speakers, phones, args.max_frames, args.seed)
        for metric, value in scores.items():
            spec = pooled_spec if metric == "speaker_id_acc" else frame_spec_
            rows.append(ResultRow("probes", source.name, dataset, name, metric, value, variant=args.variant,
                                  features=str(spec), checkpoint=source.checkpoint,
                                  checkpoint_hash=source.checkpoint_hash, config=source.config,
                                  details=f"logistic regression; {len(train)} train / {len(test)} test utterances"))
            print(f"{source.name} {dataset} {name} encoder {metric} ({spec}): {value:.2f} %")
    out = append_rows(args.results / "probes.csv", rows)
    print(f"results merged into {out}", file=sys.stderr)
    return 0
