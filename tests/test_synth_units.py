"""Demo corpus builder, the parts that need no synthesiser: phone maps, text, alignment,
audio finishing, the plan, speaker selection and the Debian install script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from learn2diss.data.synth import speakers as speakers_module
from learn2diss.data.synth.alignment import align, refine_silence_edges
from learn2diss.data.synth.finishing import gate_silences, quantise
from learn2diss.data.synth.phones import ARPABET, INVENTORY, PHONE_SETS, SILENCE, to_arpabet
from learn2diss.data.synth.plan import (
    choose_test_speakers,
    default_test_speakers,
    make_plan,
    used_splits,
)
from learn2diss.data.synth.speakers import SPEAKERS, select_speakers
from learn2diss.data.synth.text import clean_sentence, transcript, wordnet_sentences

SR = 16000
REPO = Path(__file__).resolve().parents[1]


def test_phone_maps_land_in_one_inventory() -> None:
    assert INVENTORY[0] == SILENCE and len(set(INVENTORY)) == len(ARPABET) + 1 == 40
    for name, mapping in PHONE_SETS.items():
        assert set(mapping.values()) <= set(INVENTORY), name
    assert to_arpabet("O2", "us-sampa") == "AO" and to_arpabet("pau", "radio") == SILENCE
    assert to_arpabet("3:", "uk-sampa") == "ER" and to_arpabet("#", "mrpa") == SILENCE
    with pytest.raises(ValueError, match="'Q!' is not in the 'radio'"):
        to_arpabet("Q!", "radio")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "his loss of credibility led to his resignation",
            "his loss of credibility led to his resignation.",
        ),
        ("a well-known  fact, they say; isn't it", "a well known fact, they say; isn't it."),
        ("he paid 30 dollars for it", None),  # digits
        ("the U.S. army moved in today", None),  # abbreviation
        ("the NATO troops arrived in town", None),  # spelt-out acronym
        ("too short here", None),
        ("the dogs' bowls were all empty now", None),  # apostrophe at a word edge
    ],
)
def test_clean_sentence(raw: str, expected: str | None) -> None:
    assert clean_sentence(raw) == expected


def test_transcript_is_librispeech_style() -> None:
    assert transcript("A well known fact, isn't it?") == "A WELL KNOWN FACT ISN'T IT"


def test_wordnet_sentences_from_glosses(tmp_path: Path) -> None:
    gloss = (
        '00001 03 n 01 thing 0 000 | a thing; "the thing was on the table today"; "bad 42 thing"\n'
    )
    (tmp_path / "data.noun").write_text(
        '  1 licence header "quoted in licence text here"\n' + gloss
    )
    for name in ("data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_text(gloss.replace("table", "chair"))
    assert wordnet_sentences(tmp_path) == [
        "the thing was on the chair today.",
        "the thing was on the table today.",
    ]
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        wordnet_sentences(tmp_path / "missing")


def test_align_snaps_the_end_and_merges_pauses() -> None:
    timed = [("pau", 0.1), ("pau", 0.2), ("hh", 0.3), ("ax", 0.4), ("pau", 0.6)]
    longer = align(timed, "radio", num_samples=round(0.55 * SR))  # labels past the audio: cut
    assert longer == (
        (0, 3200, SILENCE),
        (3200, 4800, "HH"),
        (4800, 6400, "AH"),
        (6400, 8800, SILENCE),
    )
    shorter = align(timed, "radio", num_samples=round(0.63 * SR))  # audio longer: silence extended
    assert shorter[-1] == (6400, 10080, SILENCE)
    no_pause = align([("h", 0.1), ("i:", 0.3)], "uk-sampa", num_samples=round(0.35 * SR))
    assert no_pause[-1] == (4800, 5600, SILENCE)
    with pytest.raises(RuntimeError, match="no phones"):
        align([("_", 0.3)], "us-sampa", num_samples=4800)


def _tone(start: float, end: float, total: float) -> np.ndarray:
    audio = np.zeros(round(total * SR))
    t = np.arange(round(start * SR), round(end * SR))
    audio[t] = 0.5 * np.sin(2 * np.pi * 200 * t / SR)
    return audio


def test_refine_moves_silence_edges_to_the_sound() -> None:
    audio = _tone(0.20, 0.52, 0.8)  # sound starts 50 ms before the label and ends 20 ms after
    segments = ((0, 4000, SILENCE), (4000, 8000, "AA"), (8000, 12800, SILENCE))
    refined = refine_silence_edges(segments, audio)
    assert refined[0][0] == 0 and refined[-1][1] == 12800
    assert abs(refined[0][1] - 0.20 * SR) <= 0.006 * SR
    assert abs(refined[1][1] - 0.52 * SR) <= 0.006 * SR
    assert all(a[1] == b[0] for a, b in zip(refined, refined[1:], strict=False))
    far = _tone(0.05, 0.52, 0.8)  # 200 ms early: more than the largest shift, edge moves 80 ms
    assert refine_silence_edges(segments, far)[0][1] == 4000 - round(0.08 * SR)


def test_gate_zeroes_silences_and_quantise_dithers() -> None:
    audio = _tone(0.0, 0.8, 0.8)
    segments = ((0, 3200, SILENCE), (3200, 9600, "AA"), (9600, 12800, SILENCE))
    gated = gate_silences(audio, segments)
    assert np.all(gated[:3040] == 0) and np.all(gated[9760:] == 0)
    np.testing.assert_array_equal(gated[3200:9600], audio[3200:9600])
    samples = quantise(gated, seed=5)
    assert samples.dtype == np.int16
    assert abs(np.abs(samples).max() - round(32767 * 10 ** (-3 / 20))) <= 1
    assert np.all(np.abs(samples[:3000]) <= 1) and np.count_nonzero(samples[:3000]) > 300
    np.testing.assert_array_equal(samples, quantise(gated, seed=5))
    assert not np.array_equal(samples, quantise(gated, seed=6))


def test_plan_splits_shared_sentences_and_determinism(tmp_path: Path) -> None:
    chosen = list(SPEAKERS[:8])
    sentences = [f"sentence number {i} is here." for i in range(200)]
    kwargs = dict(
        utts=6,
        shared=2,
        seed=1,
        test_speakers=2,
        dev_fraction=0.25,
        channel_augment=0.5,
        audio_format="flac",
    )
    plan = make_plan(chosen, sentences, tmp_path, **kwargs)
    assert plan == make_plan(chosen, sentences, tmp_path, **kwargs)
    assert len(plan) == 8 * 6
    test = {u.speaker.speaker_id for u in plan if u.split == "test"}
    train = {u.speaker.speaker_id for u in plan if u.split == "train"}
    assert len(test) == 2 and not test & train
    assert {u.speaker.sex for u in plan if u.split == "test"} == {"F", "M"}
    assert {u.speaker.speaker_id for u in plan if u.split == "dev"} == train
    shared = {u.utt_id.split("-", 1)[1]: set() for u in plan if u.chapter == 1}
    for u in plan:
        if u.chapter == 1:
            shared[u.utt_id.split("-", 1)[1]].add(u.sentence)
    assert len(shared) == 2 and all(len(s) == 1 for s in shared.values())
    own = [u.sentence for u in plan if u.chapter == 2]
    assert len(own) == len(set(own))
    assert any(u.job.channel or u.job.noise_snr_db for u in plan)
    clean = make_plan(chosen, sentences, tmp_path, **{**kwargs, "channel_augment": 0.0})
    assert [u.job.tempo for u in clean] == [u.job.tempo for u in plan]  # own random stream
    with pytest.raises(ValueError, match="needs 2002 sentences"):
        make_plan(chosen, sentences, tmp_path, **{**kwargs, "utts": 252})


def test_test_speaker_count_and_sexes() -> None:
    assert [default_test_speakers(n) for n in (2, 4, 6, 24)] == [1, 1, 2, 6]
    males = [s for s in SPEAKERS if s.sex == "M"][:5] + [s for s in SPEAKERS if s.sex == "F"][:1]
    for seed in range(10):
        chosen = choose_test_speakers(males, 2, np.random.default_rng(seed))
        assert {s.sex for s in males if s.speaker_id in chosen} == {"F", "M"}


def test_default_speakers_mix_sexes_and_backends() -> None:
    default = SPEAKERS[:24]
    assert sum(s.sex == "F" for s in default) >= 6 and sum(s.sex == "M" for s in default) >= 6
    assert {s.voice.backend for s in SPEAKERS[:6]} == {"mbrola", "flite", "festival"}
    mbrola = [(s.voice.name, s.pitch, s.formant) for s in SPEAKERS if s.voice.backend == "mbrola"]
    assert len(set(mbrola)) == len(mbrola)
    pairs = {}
    for voice, pitch, formant in mbrola:  # pseudo-speakers differ in pitch or formants, not tempo
        assert (pitch, formant) not in pairs.get(voice, set())
        pairs.setdefault(voice, set()).add((pitch, formant))
    assert len({s.speaker_id for s in SPEAKERS}) == len(SPEAKERS)


def test_missing_voices_shrink_the_speaker_set() -> None:
    available = {name: name not in ("us1", "kal") for name in speakers_module.VOICES}
    chosen, warnings = select_speakers(30, available)  # 32 speakers, 6 of them on us1 or kal
    assert len(chosen) == 26 and all(s.voice.name not in ("us1", "kal") for s in chosen)
    assert any("mbrola-us1" in w for w in warnings) and any(
        "festvox-kallpc16k" in w for w in warnings
    )
    assert any("only" in w for w in warnings)
    assert select_speakers(3, dict.fromkeys(speakers_module.VOICES, True)) == (
        list(SPEAKERS[:3]),
        [],
    )


def test_no_voices_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from learn2diss.cli import console

    monkeypatch.setattr(
        speakers_module, "available_voices", lambda: dict.fromkeys(speakers_module.VOICES, False)
    )
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert console(["data", "synth", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("learn2diss data synth: error: ") and "Traceback" not in err
    assert "install-demo-debs.sh" in err and "mbrola-us1" in err


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("installed", [True, False])
def test_install_script_without_root(tmp_path: Path, installed: bool) -> None:
    """Stubbed dpkg-query/id/apt-get: all present -> nothing to do; missing and not root ->
    the exact commands and exit 0. apt-get must never be reached here."""
    status = "echo 'install ok installed'" if installed else "exit 1"
    _stub(tmp_path, "dpkg-query", status)
    _stub(tmp_path, "id", "echo 1000")
    _stub(tmp_path, "apt-get", "echo apt-get was called >&2; exit 99")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    script = REPO / "scripts" / "install-demo-debs.sh"
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "apt-get was called" not in result.stderr
    if installed:
        assert "already installed" in result.stdout
    else:
        assert "WARNING" in result.stderr and "not root" in result.stderr
        assert "apt-get install -y --no-install-recommends" in result.stderr
        assert "mbrola-us1" in result.stderr and "wordnet-base" in result.stderr


def test_validation_speakers_are_unseen_and_leave_the_rest_of_the_plan_alone(tmp_path: Path) -> None:
    chosen = list(SPEAKERS[:10])
    sentences = [f"sentence number {i} is here." for i in range(200)]
    kwargs = dict(utts=5, shared=2, seed=4, test_speakers=2, dev_fraction=0.25, channel_augment=0.0,
                  audio_format="flac")
    without = make_plan(chosen, sentences, tmp_path, **kwargs)
    plan = make_plan(chosen, sentences, tmp_path, **kwargs, val_speakers=3)
    by_split = {s: {u.speaker.speaker_id for u in plan if u.split == s} for s in ("train", "dev", "val", "test")}
    assert len(by_split["val"]) == 3 and len(by_split["test"]) == 2
    assert not by_split["val"] & by_split["test"] and not (by_split["val"] | by_split["test"]) & by_split["train"]
    assert by_split["dev"] == by_split["train"]
    assert {u.speaker.sex for u in plan if u.split == "val"} == {"F", "M"}
    # same test speakers, sentences and synthesis parameters as without validation speakers
    def drawn(p: list) -> list:
        return [(u.utt_id, u.sentence, u.job.tempo, u.job.f0, u.job.seed) for u in p]

    assert drawn(plan) == drawn(without)
    assert [u.utt_id for u in without if u.split == "test"] == [u.utt_id for u in plan if u.split == "test"]
    assert used_splits(plan) == ("train", "dev", "val", "test") and "val" not in used_splits(without)
    with pytest.raises(ValueError, match="--val-speakers 8"):
        make_plan(chosen, sentences, tmp_path, **kwargs, val_speakers=8)
