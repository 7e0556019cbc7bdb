"""CTC fine-tuning on letters and 4-gram decoding (Tables 4 and 7).

Fine-tunes the frame encoder's transformer layers and a linear letter head (blank, word boundary,
apostrophe, a-z) with CTC on a Libri-light 1 h / 10 h split or train-clean-100 (the feature extractor
stays frozen; only the head trains for the first finetune.freeze_updates), with the schedule of --config
(packaged: ctc_1h, ctc_10h, ctc_100h, ctc_demo; a tri-stage schedule must span finetune.max_updates). Then
decodes each evaluation set with flashlight-text's LexiconDecoder and the KenLM model --lm (ARPA or
binary; the lexicon is spelled from --words; `learn2diss data lm` builds both from text) and scores WER
with jiwer; best-path (no LM) WER is reported too, with the share of frames whose best label is blank.
Fine-tuning runs in the pretraining trainer (DDP under torchrun, NaN/inf updates skipped and counted) and
resumes from its last checkpoint under --work-dir. Scores are merged into RESULTS/ctc.csv (development sets
go to Table 7, the others to Table 4), hypotheses written to RESULTS/ctc/<model>/<condition>/<set>.hyp.txt.

Examples (on the files of `make demo`: a 4-gram of the training transcripts, then the demo recipe)::

    learn2diss data lm --transcripts runs/demo/corpus/LibriSpeech-style/train --out runs/demo/lm
    learn2diss eval ctc --checkpoint runs/demo/checkpoints/lambda-default-seed0 --config ctc_demo \\
        --train runs/demo/corpus/LibriSpeech-style/train --eval runs/demo/corpus/LibriSpeech-style/test \\
        --lm runs/demo/lm/4-gram.arpa --words runs/demo/lm/words.txt --condition demo

On Libri-light 10 h with LibriSpeech's official 4-gram (not run: needs the data, the LM and a GPU)::

    learn2diss eval ctc --checkpoint ckpt/l2d_w12 --config ctc_10h --train-split 10h --data-root /data \\
        --eval-sets dev-clean dev-other test-clean test-other --lm 4-gram.arpa --words librispeech-vocab.txt \\
        --model-name L2D-W12
    torchrun --nproc_per_node=8 -m learn2diss eval ctc --checkpoint ckpt/l2d_w12 --config ctc_10h \\
        --set finetune.grad_accum=1 --train-split 10h --data-root /data --eval-sets dev-clean --model-name L2D-W12
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from learn2diss.errors import UsageError
from learn2diss.eval.commands.common import add_model_arguments, open_source
from learn2diss.options import add_set_argument, input_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, features_default=None)
    parser.add_argument("--config", default="ctc_10h", help="packaged CTC config name or YAML path (default ctc_10h)")
    add_set_argument(parser, "finetune.max_updates=1000", dest="overrides")
    parser.add_argument("--data-root", type=Path, help="folder holding librispeech_finetuning/ and LibriSpeech/")
    parser.add_argument("--train-split", choices=("1h", "10h", "100h"), help="named training split under --data-root")
    parser.add_argument("--train", type=Path, nargs="+", help="LibriSpeech-layout training folders instead")
    parser.add_argument("--eval-sets", nargs="+", default=[], help="LibriSpeech sets under --data-root "
                                                                  "(dev-clean dev-other test-clean test-other)")
    parser.add_argument("--eval", type=Path, nargs="+", default=[], help="LibriSpeech-layout evaluation folders "
                                                                         "(named by their folder name)")
    parser.add_argument("--condition", help="column name in the tables (default: the training split, else the config)")
    parser.add_argument("--lm", type=Path, help="KenLM n-gram (ARPA or binary); without it only best-path WER")
    parser.add_argument("--words", type=Path, help="word list for the lexicon (first column; required with --lm)")


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.ctc.config import load_ctc_config
    from learn2diss.eval.ctc.data import read_split, read_transcribed_folder
    from learn2diss.eval.ctc.decode import LexiconLMDecoder, viterbi_decode, word_error_rate
    from learn2diss.eval.ctc.finetune import emissions, finetune
    from learn2diss.eval.ctc.lexicon import read_word_list
    from learn2diss.eval.results import ResultRow, append_rows
    from learn2diss.io import write_text
    from learn2diss.training.ddp import setup_distributed, teardown

    if args.checkpoint is None:
        raise UsageError("CTC fine-tuning needs --checkpoint (precomputed features cannot be fine-tuned)")
    if args.lm is not None and args.words is None:
        raise UsageError("--lm needs --words (the word list the lexicon is spelled from)")
    for option in ("lm", "words"):
        if getattr(args, option) is not None:
            input_file(getattr(args, option), f"--{option}")
    config_name, config = load_ctc_config(args.config, args.overrides)
    if args.train_split:
        if args.data_root is None:
            raise UsageError("--train-split needs --data-root")
        train = read_split(args.data_root, args.train_split)
    elif args.train:
        train = [u for folder in args.train for u in read_transcribed_folder(folder)]
    else:
        raise UsageError("give --train-split with --data-root, or --train FOLDER...")
    eval_sets = {name: read_split(args.data_root, name) for name in args.eval_sets} if args.eval_sets else {}
    eval_sets.update({folder.name: read_transcribed_folder(folder) for folder in args.eval})
    if not eval_sets:
        raise UsageError("give --eval-sets (with --data-root) or --eval FOLDER... to score")
    condition = args.condition or args.train_split or config_name.removeprefix("ctc_")

    source = open_source(args)
    if source.model is None:
        raise UsageError("ctc fine-tunes a model: give --checkpoint, not --features-dir")
    run_dir = args.work_dir / "ctc" / source.name / condition
    ctx = setup_distributed(source.device)
    if ctx.is_main:
        print(f"fine-tuning on {len(train)} utterances ({config_name}); run folder {run_dir}", file=sys.stderr)
    ctc = finetune(source.model, train, config, run_dir, ctx)
    teardown(ctx)
    if not ctx.is_main:  # rank 0 decodes and writes the results
        return 0
    decoder = LexiconLMDecoder(read_word_list(args.words), args.lm, config.decode) if args.lm else None

    rows = []
    hyp_dir = args.results / "ctc" / source.name / condition
    for dataset, utterances in eval_sets.items():
        refs, viterbi, beam, blank_frames, frames = [], [], [], 0, 0
        for utt in utterances:
            log_probs = emissions(ctc, utt, ctx.device)
            blank_frames, frames = blank_frames + int((log_probs.argmax(-1) == 0).sum()), frames + len(log_probs)
            refs.append(utt.text)
            viterbi.append(viterbi_decode(log_probs))
            if decoder is not None:
                beam.append(decoder(log_probs))
        blank = 100.0 * blank_frames / max(frames, 1)
        print(f"{source.name} {condition} {dataset}: blank is the best label of {blank:.1f} % of the frames",
              file=sys.stderr)
        if not any(viterbi):
            print(f"warning: {dataset}: every best-path hypothesis is empty: the model outputs only blanks (the CTC "
                  "all-blank plateau); let the letter head learn faster than the encoder (--set finetune.head_lr_scale=10), "
                  "or fine-tune longer (--set finetune.max_updates=...)", file=sys.stderr)
        ids = [u.utt_id for u in utterances]
        write_text(hyp_dir / f"{dataset}.viterbi.txt", "".join(f"{i}\t{h}\n" for i, h in zip(ids, viterbi, strict=True)))
        scores = {"wer_viterbi": word_error_rate(refs, viterbi), "blank_rate": blank}
        if decoder is not None:
            write_text(hyp_dir / f"{dataset}.hyp.txt", "".join(f"{i}\t{h}\n" for i, h in zip(ids, beam, strict=True)))
            scores["wer"] = word_error_rate(refs, beam)
        for metric, value in scores.items():
            details = (f"{len(utterances)} utterances, {frames} frames" if metric == "blank_rate" else
                       f"{len(utterances)} utterances; blank {blank:.1f} % of frames"
                       + (f"; {config.decode}" if metric == "wer" else ""))
            rows.append(ResultRow("ctc", source.name, dataset, condition, metric, value, variant=args.variant,
                                  features="frame:last", checkpoint=source.checkpoint,
                                  checkpoint_hash=source.checkpoint_hash,
                                  config="/".join(c for c in (source.config, config_name) if c), details=details))
            print(f"{source.name} {condition} {dataset} {metric}: {value:.2f} %")
    out = append_rows(args.results / "ctc.csv", rows)
    print(f"results merged into {out}; hypotheses in {hyp_dir}", file=sys.stderr)
    return 0
