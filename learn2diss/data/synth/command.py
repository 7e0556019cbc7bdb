"""Build the demo corpus: synthetic multi-speaker speech with exact phone alignments, offline.

Speakers are Debian synthesiser voices recorded from real people (espeak-ng + MBROLA us1/us2/us3/
en1, flite slt/rms/awb/kal16, festival kal/ked/rab/slt-hts) and MBROLA pseudo-speakers with other
pitch and formants; text is WordNet example sentences. The output is a LibriSpeech-style tree with
phone alignments, split manifests, ABX item files and VoxCeleb-style lists (docs/demo_corpus.md).
The Debian packages come from `bash scripts/install-demo-debs.sh` (as root).

Example::

    learn2diss data synth --out data/small --speakers 8 --utts 10

A larger corpus (not run: several minutes of synthesis)::

    learn2diss data synth --out data/demo-big --speakers 32 --utts 200 --shared 20 --seed 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from learn2diss import io as lio
from learn2diss.data.synth.backends import Result
from learn2diss.data.synth.plan import Utterance, used_splits
from learn2diss.data.synth.speakers import VOICES, Speaker
from learn2diss.errors import InputError, MissingInputError, OutputExistsError
from learn2diss.upstream.config import SAMPLE_RATE

CHUNK_SIZE = 8  # utterances of one speaker per worker task (one festival process)
BUILD_DIR = ".build"  # resumable state; removed when the corpus is complete
SUMMARY_FILE = "corpus.json"
INSTALL_HINT = "install them with `sudo bash scripts/install-demo-debs.sh`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder of the corpus")
    parser.add_argument("--speakers", type=int, default=24, help="number of speakers (default 24)")
    parser.add_argument("--utts", type=int, default=50, help="utterances per speaker (default 50)")
    parser.add_argument(
        "--shared", type=int, default=10, help="sentences read by every speaker (default 10)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--test-speakers",
        type=int,
        default=None,
        help="speakers held out for test (default: a quarter)",
    )
    parser.add_argument(
        "--val-speakers",
        type=int,
        default=0,
        help="unseen validation speakers, disjoint from test and train: split 'val' with its own "
        "alignments and ABX items, for choosing settings without looking at test (default 0; "
        "`learn2diss demo` uses 6)",
    )
    parser.add_argument(
        "--dev-fraction",
        type=float,
        default=0.1,
        help="share of each train speaker's own sentences held out as dev (default 0.1)",
    )
    parser.add_argument(
        "--channel-augment",
        type=float,
        default=0.0,
        help="probability that an utterance gets a random sox channel (default 0: clean)",
    )
    parser.add_argument("--audio-format", choices=("flac", "wav"), default="flac")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a corpus built with other settings in --out",
    )


def settings_of(args: argparse.Namespace, speakers: list[Speaker], test_speakers: int) -> dict:
    """Everything that determines the corpus bytes; its hash identifies a build."""
    settings = {
        "speakers": [s.name for s in speakers],
        "utts": args.utts,
        "shared": args.shared,
        "seed": args.seed,
        "test_speakers": test_speakers,
        "dev_fraction": args.dev_fraction,
        "channel_augment": args.channel_augment,
        "audio_format": args.audio_format,
    }
    if args.val_speakers:  # only then: corpora built before the option keep their fingerprint
        settings["val_speakers"] = args.val_speakers
    return settings


def check_arguments(args: argparse.Namespace) -> None:
    if args.speakers < 2:
        raise InputError(f"--speakers must be at least 2 (got {args.speakers})")
    if not 0 <= args.shared <= args.utts or args.utts < 1:
        raise InputError(
            f"need 1 <= --utts and 0 <= --shared <= --utts (got {args.utts}, {args.shared})"
        )
    if not 0 <= args.dev_fraction < 1 or not 0 <= args.channel_augment <= 1:
        raise InputError("--dev-fraction must be in [0, 1) and --channel-augment in [0, 1]")
    if args.val_speakers < 0:
        raise InputError(f"--val-speakers must be at least 0 (got {args.val_speakers})")
    if args.jobs < 1:
        raise InputError(f"--jobs must be at least 1 (got {args.jobs})")


def prepare_out_dir(out: Path, fingerprint: str, overwrite: bool) -> bool:
    """Make ``out`` ready; True when a complete corpus with these settings is already there."""
    summary, state = out / SUMMARY_FILE, out / BUILD_DIR / "plan.json"
    ours = summary.is_file() or state.is_file()
    if summary.is_file() and lio.read_json(summary, "corpus summary").get("fingerprint") == fingerprint:
        return True
    if state.is_file() and lio.read_json(state, "corpus build plan").get("fingerprint") == fingerprint:
        return False  # resume
    if out.exists() and any(out.iterdir()):
        if not (ours and overwrite):
            hint = "pass --overwrite to replace it" if ours else "choose an empty or new folder"
            raise OutputExistsError(
                f"{out} is not empty and holds no corpus with these settings; {hint}"
            )
        shutil.rmtree(out)
    (out / BUILD_DIR / "done").mkdir(parents=True, exist_ok=True)
    lio.write_text(state, json.dumps({"fingerprint": fingerprint}))
    return False


def _work(task: tuple[int, Speaker, list]) -> tuple[int, list[Result]]:
    from learn2diss.data.synth.backends import synthesise_chunk

    index, speaker, jobs = task
    return index, synthesise_chunk(speaker, jobs)


def synthesise(plan: list[Utterance], out: Path, jobs: int) -> dict[str, Result]:
    """Run every chunk not already done (results cached per chunk), with a progress bar."""
    from multiprocessing import get_context

    from tqdm import tqdm

    chunks: list[list[Utterance]] = []
    for utt in plan:
        if chunks and chunks[-1][0].speaker == utt.speaker and len(chunks[-1]) < CHUNK_SIZE:
            chunks[-1].append(utt)
        else:
            chunks.append([utt])
    done_dir = out / BUILD_DIR / "done"
    results: dict[str, Result] = {}
    todo = []
    for index, chunk in enumerate(chunks):
        cached = done_dir / f"{index:05d}.json"
        if cached.is_file():
            for row in lio.read_json(cached, "synthesis results"):
                results[row["utt_id"]] = Result(
                    row["utt_id"],
                    row["num_samples"],
                    tuple(map(tuple, row["segments"])),
                    row["error"],
                )
        else:
            todo.append((index, chunk[0].speaker, [u.job for u in chunk]))
    for utt in plan:
        (out / utt.path).parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(plan), initial=len(results), unit="utt", desc="synthesising")
    with bar, get_context("fork").Pool(jobs) as pool:
        for index, chunk_results in pool.imap_unordered(_work, todo):
            rows = [r.__dict__ for r in chunk_results]
            lio.write_text(done_dir / f"{index:05d}.json", json.dumps(rows))
            results.update({r.utt_id: r for r in chunk_results})
            bar.update(len(chunk_results))
    return results


def package_versions() -> dict[str, str]:
    packages = sorted(
        {v.package for v in VOICES.values()} | {"espeak-ng", "mbrola", "sox", "wordnet-base"}
    )
    if not shutil.which("dpkg-query"):
        return {}
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Version}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def summarise(
    plan: list[Utterance], results: dict[str, Result], settings: dict, fingerprint: str
) -> dict:
    splits = {}
    for split in used_splits(plan):
        ok = [
            results[u.utt_id] for u in plan if u.split == split and results[u.utt_id].error is None
        ]
        split_speakers = {u.speaker.speaker_id for u in plan if u.split == split}
        hours = sum(r.num_samples for r in ok) / SAMPLE_RATE / 3600
        splits[split] = {"speakers": len(split_speakers), "utterances": len(ok), "hours": round(hours, 4)}
    skipped = [
        {"utt_id": u.utt_id, "reason": results[u.utt_id].error}
        for u in plan
        if results[u.utt_id].error
    ]
    split_of = {u.speaker.speaker_id: u.split for u in plan if u.split in ("test", "val")}
    speakers = []
    for s in dict.fromkeys(u.speaker for u in plan):
        speakers.append({
            "speaker": s.speaker_id, "name": s.name, "sex": s.sex, "voice": s.voice.name,
            "backend": s.voice.backend, "pitch": s.pitch, "formant": s.formant, "tempo": s.tempo,
            "median_f0": round(s.median_f0, 1),
            "split": split_of.get(s.speaker_id, "train"),
        })  # fmt: skip
    return {
        "format_version": 1,
        "fingerprint": fingerprint,
        "sample_rate": SAMPLE_RATE,
        "settings": settings,
        "splits": splits,
        "speakers": speakers,
        "skipped": skipped,
        "packages": package_versions(),
    }


def build(args: argparse.Namespace) -> dict:
    """Plan, synthesise (resumably) and write the whole corpus; returns the summary."""
    from learn2diss.data.synth import layout
    from learn2diss.data.synth.plan import default_test_speakers, make_plan
    from learn2diss.data.synth.speakers import available_voices, select_speakers
    from learn2diss.data.synth.text import wordnet_sentences

    check_arguments(args)
    if not shutil.which("sox"):
        raise MissingInputError(f"sox is not installed; {INSTALL_HINT}")
    speakers, warnings = select_speakers(args.speakers, available_voices())
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if len(speakers) < 2:
        raise MissingInputError(
            f"fewer than 2 speakers can be synthesised: the synthesisers are missing; {INSTALL_HINT}"
        )
    test_speakers = (
        args.test_speakers
        if args.test_speakers is not None
        else default_test_speakers(len(speakers))
    )
    if not 1 <= test_speakers < len(speakers):
        raise InputError(
            f"--test-speakers must be in [1, {len(speakers) - 1}] (got {test_speakers})"
        )
    settings = settings_of(args, speakers, test_speakers)
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    out = args.out
    if prepare_out_dir(out, fingerprint, args.overwrite):
        print(f"{out} already holds this corpus (settings {fingerprint}); nothing to do")
        return lio.read_json(out / SUMMARY_FILE, "corpus summary")
    plan = make_plan(
        speakers, wordnet_sentences(), out.resolve(), utts=args.utts, shared=args.shared,
        seed=args.seed, test_speakers=test_speakers, dev_fraction=args.dev_fraction,
        channel_augment=args.channel_augment, audio_format=args.audio_format,
        val_speakers=args.val_speakers,
    )  # fmt: skip
    results = synthesise(plan, out, args.jobs)
    done = [(u, results[u.utt_id]) for u in plan if results[u.utt_id].error is None]
    layout.write_transcripts(out, done)
    layout.write_split_manifests(out, done)
    layout.write_alignments(out, done)
    for split in ("val", "test"):
        if any(u.split == split for u, _ in done):
            layout.write_abx(out, done, split)
    layout.write_voxceleb(out, plan, done, args.seed)
    summary = summarise(plan, results, settings, fingerprint)
    lio.write_text(out / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(out / BUILD_DIR)
    return summary


def print_summary(summary: dict, out: Path, wall: float) -> None:
    speakers = summary["speakers"]
    sexes = {sex: sum(s["sex"] == sex for s in speakers) for sex in ("F", "M")}
    print(f"corpus in {out}: {len(speakers)} speakers ({sexes['F']} F, {sexes['M']} M)")
    for split, row in summary["splits"].items():
        print(
            f"  {split:5s} {row['speakers']:3d} speakers {row['utterances']:6d} utterances {row['hours']:7.3f} h"
        )
    total = sum(row["hours"] for row in summary["splits"].values())
    print(f"  total {total:.3f} h, skipped {len(summary['skipped'])} utterances, {wall:.1f} s")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    summary = build(args)
    print_summary(summary, args.out, time.perf_counter() - start)
    return 0
