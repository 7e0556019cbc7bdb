"""A generated ZeroSpeech 2021 dataset folder (phonetic part, the published layout) for the submission tests.

``ROOT/phonetic/<subset>/<speaker>-<phone><n>.wav`` for the four abxLS subsets, and ``<subset>.item`` for the
dev subsets only (the test subsets' item files are not published). Each wav is 0.6 s: a phone "A" or "B" (a
tone at the phone's pitch plus the speaker's offset) at 0.2-0.4 s between quiet noise, one item per wav, so
ABX has within- and across-speaker triplets to score: 3 speakers x 2 phones x 2 utterances in each dev
subset, one "A" per speaker in each test subset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
SPEAKERS = ("s1", "s2", "s3")
PHONES = {"A": 220.0, "B": 660.0}
PER_PHONE = 2  # utterances per speaker and phone


def write_zr2021(root: Path, seed: int = 0) -> Path:
    """The dataset folder at ``root``: 12 wavs in each dev subset, 3 in each test subset."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.6 * 16000)) / 16000
    for subset in SUBSETS:
        folder = root / "phonetic" / subset
        folder.mkdir(parents=True, exist_ok=True)
        items = ["#file onset offset #phone prev-phone next-phone speaker"]
        dev = subset.startswith("dev")
        for k, speaker in enumerate(SPEAKERS):
            for phone, pitch in list(PHONES.items())[: 2 if dev else 1]:
                for n in range(PER_PHONE if dev else 1):
                    name = f"{speaker}-{phone}{n}"
                    wav = 0.01 * rng.standard_normal(t.size)
                    inside = (t >= 0.2) & (t < 0.4)
                    wav[inside] += 0.3 * np.sin(2 * np.pi * (pitch + 40 * k) * t[inside])
                    sf.write(folder / f"{name}.wav", wav.astype(np.float32), 16000)
                    items.append(f"{name} 0.2000 0.4000 {phone} X Y {speaker}")
        if dev:
            (folder / f"{subset}.item").write_text("\n".join(items) + "\n")
    return root
