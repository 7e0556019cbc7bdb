"""A ZeroSpeech 2021 submission package of a demo checkpoint, on the demo corpus laid out as a ZeroSpeech folder.

The demo corpus (``learn2diss demo``) as ``ROOT/phonetic/<subset>/*.wav``: dev-clean = the test speakers'
utterances with ``abx/test.item``, dev-other = the validation speakers' with ``abx/val.item``, test-clean and
test-other the same wavs without item files (as published, the test item files are the organisers'). Then
``learn2diss zerospeech submit`` and ``validate``; prints our ABX table (docs/release.md, "ZeroSpeech submission").

    python bench/zerospeech_demo.py --corpus runs/demo/corpus --checkpoint runs/demo/checkpoints/lambda-default-seed0 \\
        --out /tmp/zr-demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf

from learn2diss.commands import run_command

LAYOUT = (("dev-clean", "test", "test.item"), ("dev-other", "val", "val.item"), ("test-clean", "test", None),
          ("test-other", "val", None))
META = ["--authors", "Ada Lovelace, Alan Turing", "--institution", "Analytical Engine Society",
        "--description", "Learn2Diss demo checkpoint, frame encoder, last layer", "--train-set",
        "learn2diss demo corpus", "--open-source", "--gpu-budget", "0 (CPU)"]


def lay_out(corpus: Path, root: Path) -> Path:
    for subset, split, item in LAYOUT:
        folder = root / "phonetic" / subset
        folder.mkdir(parents=True, exist_ok=True)
        for flac in sorted((corpus / "LibriSpeech-style" / split).rglob("*.flac")):
            audio, rate = sf.read(flac, dtype="float32")
            sf.write(folder / f"{flac.stem}.wav", audio, rate)
        if item:
            (folder / f"{subset}.item").write_text((corpus / "abx" / item).read_text())
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the demo corpus folder (runs/demo/corpus)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a demo checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="working folder (dataset, package, results)")
    args = parser.parse_args()
    dataset = lay_out(args.corpus, args.out / "zerospeech2021")
    package = args.out / "submission" / args.checkpoint.name
    run_command("zerospeech", "submit", "--checkpoint", args.checkpoint, "--zr2021", dataset, "--out", package,
                "--results", args.out / "results", "--device", "cpu", *META)
    run_command("zerospeech", "validate", package, "--zr2021", dataset)


if __name__ == "__main__":
    main()
