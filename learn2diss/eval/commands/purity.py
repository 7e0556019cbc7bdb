"""Phone purity, cluster purity, PNMI and speaker purity of a checkpoint (Table 8).

Frame features of the aligned utterances are quantised with faiss k-means (K = --clusters, fitted on
--fit-frames random frames) and compared with the frame-level phones (label at each 20 ms frame
centre); utterance embeddings are quantised into --speaker-clusters clusters (capped at the number of
utterances) and compared with the speakers. Results are merged into RESULTS/purity.csv (percent).

Examples (on the files of `make demo`; --clusters 100 is the demo's K, which gives its rows.csv values)::

    learn2diss eval purity --checkpoint runs/demo/checkpoints/lambda-default-seed0 \\
        --audio runs/demo/corpus/LibriSpeech-style/test --alignments runs/demo/corpus/alignments/test.tsv \\
        --speakers runs/demo/corpus/splits/test.tsv --dataset test --clusters 100

On LibriSpeech (not run: needs LibriSpeech test-clean, its phone alignments and a trained L2D-W12)::

    learn2diss eval purity --checkpoint ckpt/l2d_w12 --audio LibriSpeech/test-clean \\
        --alignments librispeech_alignments/test-clean.tsv --dataset test-clean --model-name L2D-W12
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
from learn2diss.options import add_deprecated


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, features_default="frame:last")
    add_corpus_arguments(parser)
    utterance = parser.add_argument(
        "--utterance-features", default="utt:embedding",
        help="representation for speaker purity (default utt:embedding; per-frame specs are mean-pooled); with "
             "--features-dir the frame features are mean-pooled")
    add_deprecated(parser, "--utt-features", utterance)
    parser.add_argument("--clusters", type=int, default=2048, help="k-means clusters for phone purity (paper: 2048)")
    parser.add_argument("--speaker-clusters", type=int, default=None,
                        help="k-means clusters for speaker purity (default: the number of speakers of the set, as "
                             "the demo; the paper's 2000 is about that of LibriSpeech 960 h; capped at the number "
                             "of utterances)")
    parser.add_argument("--fit-frames", type=int, default=200_000, help="random frames the k-means is fitted on")
    parser.add_argument("--kmeans-iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from learn2diss.eval.alignments import read_alignments
    from learn2diss.eval.features import FeatureSpec, load_features, pool_utterance
    from learn2diss.eval.purity import frame_phone_scores, utterance_speaker_purity
    from learn2diss.eval.results import ResultRow, append_rows

    frame_spec = FeatureSpec.parse(args.features)
    if not frame_spec.per_frame:
        raise UsageError(f"--features {frame_spec}: phone purity needs per-frame features")
    utt_spec = FeatureSpec.parse(args.utterance_features)
    alignments = read_alignments(args.alignments, args.alignment_format, args.label_rate)
    utterances = sorted(alignments)[: args.max_utterances]
    dataset = args.dataset or args.alignments.stem
    speakers = read_speakers(args.speakers, utterances)
    source = open_source(args)
    specs = [frame_spec] if source.model is None else list(dict.fromkeys([frame_spec, utt_spec]))
    folders = prepare_features(source, args, dataset, utterances, specs)

    frames = load_features(folders[str(frame_spec)], utterances)
    labels = [alignments[u].frame_labels(len(frames[u]), source.frame_shift) for u in utterances]
    phone = frame_phone_scores([frames[u] for u in utterances], labels, k=args.clusters, fit_frames=args.fit_frames,
                               seed=args.seed, niter=args.kmeans_iterations)
    utt_folder = folders[str(utt_spec)] if source.model is not None else folders[str(frame_spec)]
    used_utt_spec = utt_spec if source.model is not None else frame_spec
    pooled = np.stack([pool_utterance(a) for a in load_features(utt_folder, utterances).values()])
    q = args.speaker_clusters or len(set(speakers.values()))
    speaker, used_q = utterance_speaker_purity(pooled, [speakers[u] for u in utterances], q=q, seed=args.seed,
                                               niter=args.kmeans_iterations)
    if used_q < q:
        print(f"warning: speaker purity used {used_q} clusters for {len(utterances)} utterances; with about one "
              "utterance per cluster it is trivially high: pass --speaker-clusters near the number of speakers",
              file=sys.stderr)

    def result(metric: str, value: float, spec: FeatureSpec, details: str) -> ResultRow:
        return ResultRow("purity", source.name, dataset, str(spec), metric, value, variant=args.variant,
                         features=str(spec), checkpoint=source.checkpoint, checkpoint_hash=source.checkpoint_hash,
                         config=source.config, details=details)

    frame_details = f"faiss k-means K={phone.clusters} fit on <= {args.fit_frames} of {phone.frames} aligned frames"
    rows = [result("phone_purity", phone.phone_purity, frame_spec, frame_details),
            result("cluster_purity", phone.cluster_purity, frame_spec, frame_details),
            result("pnmi", phone.pnmi, frame_spec, frame_details),
            result("speaker_purity", speaker, used_utt_spec,
                   f"faiss k-means Q={used_q} on {len(utterances)} utterances of {len(set(speakers.values()))} "
                   "speakers")]
    out = append_rows(args.results / "purity.csv", rows)
    for r in rows:
        print(f"{source.name} {dataset} {r.metric} ({r.features}): {r.value:.2f} %")
    print(f"results merged into {out}", file=sys.stderr)
    return 0
