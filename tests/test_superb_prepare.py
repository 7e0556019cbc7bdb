"""Dataset layout checks, generated task metadata, the s3prl compatibility fixes and the launcher's argument rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from superb_fixtures import LEXICON, LIBRI_UTTERANCES, make_librispeech, make_voxceleb1, tone

from learn2diss.downstream_runs import compat
from learn2diss.downstream_runs.ctc_corpus import LibriPhoneDataset
from learn2diss.downstream_runs.launcher import LauncherError, s3prl_arguments
from learn2diss.downstream_runs.prepare import LayoutError, prepare, write_iemocap_folds
from learn2diss.downstream_runs.tasks import TASKS, parse_tasks


def test_every_task_config_is_complete_s3prl_schema() -> None:
    for task in TASKS.values():
        config = task.config()
        assert {"runner", "optimizer", "downstream_expert"} <= set(config), task.name
        assert config["runner"]["total_steps"] > 0 and config["optimizer"]["lr"] > 0
    assert [t.name for t in parse_tasks("all")] == ["pr", "asr", "ks", "ic", "sf", "sid", "asv", "er"]
    with pytest.raises(ValueError, match="unknown SUPERB task 'asvv'; choose from pr, asr"):
        parse_tasks("sid,asvv")


def test_voxceleb_layout_names_the_first_missing_file(tmp_path) -> None:
    root = make_voxceleb1(tmp_path / "VoxCeleb1")
    (root / "test" / "wav" / "id10002" / "vidT" / "00002.wav").unlink()
    with pytest.raises(LayoutError, match=r"listed in veri_test2.txt: .*test/wav/id10002/vidT/00002.wav"):
        prepare(TASKS["asv"], tmp_path, tmp_path / "meta", TASKS["asv"].config())
    (root / "iden_split.txt").unlink()
    with pytest.raises(LayoutError, match=r"missing VoxCeleb1 list: .*VoxCeleb1/iden_split.txt"):
        prepare(TASKS["sid"], root, tmp_path / "meta", TASKS["sid"].config())


def test_asv_metadata(tmp_path) -> None:
    make_voxceleb1(tmp_path / "VoxCeleb1")
    config = prepare(TASKS["asv"], tmp_path, tmp_path / "meta", TASKS["asv"].config())
    datarc = config["downstream_expert"]["datarc"]
    assert datarc["test_meta_data"] == str(tmp_path / "VoxCeleb1" / "veri_test2.txt")
    assert Path(datarc["train_meta_data"]).read_text().split() == ["id10001", "id10002", "id10003"]
    trials = [line.split() for line in Path(datarc["dev_meta_data"]).read_text().splitlines()]
    assert {t[0] for t in trials} == {"0", "1"}
    assert all((tmp_path / "VoxCeleb1" / "dev" / "wav" / t[i]).exists() for t in trials for i in (1, 2))
    assert all((t[1].split("/")[0] == t[2].split("/")[0]) == (t[0] == "1") for t in trials)


def test_librispeech_and_lexicon_checks(tmp_path) -> None:
    root = make_librispeech(tmp_path / "LibriSpeech")
    config = prepare(TASKS["asr"], tmp_path, tmp_path / "meta", TASKS["asr"].config())
    datarc = config["downstream_expert"]["datarc"]
    table = (tmp_path / "meta" / "len_for_bucket" / "test-clean.csv").read_text().splitlines()
    assert table[0] == ",file_path,length,label" and len(table) == 1 + LIBRI_UTTERANCES["test-clean"]
    first = table[1].split(",")[1]
    assert first.startswith("test-clean/") and int(table[1].split(",")[2]) == sf.info(root / first).frames
    counts = [(line.split()[0], int(line.split()[1])) for line in Path(datarc["dict_path"]).read_text().splitlines()]
    assert {s for s, _ in counts} == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ'|")
    texts = [line.split(" ", 1)[1] for file in (root / "train-clean-100").rglob("*.trans.txt")
             for line in file.read_text().splitlines()]
    words = sum(len(text.split()) for text in texts)
    assert dict(counts)["|"] == words and dict(counts)["O"] == words and dict(counts)["Q"] == 0  # every word has one O
    assert [c for _, c in counts] == sorted((c for _, c in counts), reverse=True)
    (root / "librispeech-lexicon.txt").unlink()
    with pytest.raises(LayoutError, match=r"missing PR lexicon .*LibriSpeech/librispeech-lexicon.txt"):
        prepare(TASKS["pr"], tmp_path, tmp_path / "meta", TASKS["pr"].config())
    (root / "dev-clean" / "29" / "198" / "29-198-0001.flac").unlink()
    with pytest.raises(LayoutError, match=r"audio listed in 29-198.trans.txt: .*dev-clean/29/198/29-198-0001.flac"):
        prepare(TASKS["asr"], tmp_path, tmp_path / "meta", TASKS["asr"].config())


def test_libriphone_corpus_reader(tmp_path) -> None:
    from s3prl.downstream.ctc.text import load_text_encoder

    root = make_librispeech(tmp_path / "LibriSpeech")
    config = prepare(TASKS["pr"], tmp_path, tmp_path / "meta", TASKS["pr"].config())
    tokenizer = load_text_encoder(**config["downstream_expert"]["text"])
    corpus = config["downstream_expert"]["corpus"]
    single = LibriPhoneDataset(["test-clean"], tokenizer, 1, corpus["path"], corpus["lexicon"])
    assert len(single) == LIBRI_UTTERANCES["test-clean"]
    transcripts = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for file in (root / "test-clean").rglob("*.trans.txt")
                   for line in file.read_text().splitlines()}
    for index in range(len(single)):
        path, ids = single[index]
        assert path.parent.parent.parent == root / "test-clean"
        phones = [p for word in transcripts[path.stem].split() for p in LEXICON[word].split()]
        assert tokenizer.decode(ids).split() == phones
    bucket = LibriPhoneDataset(["train-clean-100"], tokenizer, 2, corpus["path"], corpus["lexicon"])
    assert len(bucket[1]) == 2  # a bucket of 2 utterances


def test_iemocap_folds(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 6):
        session = tmp_path / f"Session{n}"
        lines = []
        for i, emotion in enumerate(("neu", "exc", "fru", "sad")):
            uid = f"Ses0{n}F_impro01_F00{i}"
            path = session / "sentences" / "wav" / f"Ses0{n}F_impro01" / f"{uid}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(0.3, 150, rng), 16000)
            lines.append(f"[1.0 - 2.0]\t{uid}\t{emotion}\t[2.5, 2.5, 2.5]")
        (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (session / "dialog" / "EmoEvaluation" / f"Ses0{n}F_impro01.txt").write_text("% header\n" + "\n".join(lines))
    out = write_iemocap_folds(tmp_path, tmp_path / "meta")
    test = json.loads((out / "Session3" / "test_meta_data.json").read_text())
    train = json.loads((out / "Session3" / "train_meta_data.json").read_text())
    assert test["labels"] == {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
    assert [item["label"] for item in test["meta_data"]] == ["neu", "hap", "sad"]  # exc -> hap, fru dropped
    assert all(item["path"].startswith("Session3/") for item in test["meta_data"])
    assert len(train["meta_data"]) == 12 and not any(i["path"].startswith("Session3/") for i in train["meta_data"])
    shutil.rmtree(tmp_path / "Session5" / "dialog")
    with pytest.raises(LayoutError, match="missing IEMOCAP label folder: .*Session5/dialog/EmoEvaluation"):
        write_iemocap_folds(tmp_path, tmp_path / "meta")


def test_sox_effects_stand_in(tmp_path) -> None:
    t = np.arange(8000) / 8000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 200 * t), 0.1 * np.sin(2 * np.pi * 200 * t)], axis=1)
    sf.write(tmp_path / "stereo8k.wav", stereo.astype(np.float32), 8000)
    wav, rate = compat.apply_effects_file(tmp_path / "stereo8k.wav", [["channels", "1"], ["rate", "16000"], ["gain", "-3.0"]])
    assert rate == 16000 and wav.shape == (1, 16000)
    assert float(wav.abs().max()) == pytest.approx(0.3 * 10 ** (-3 / 20), rel=0.02)  # mean of channels, -3 dB
    loaded, rate = compat.load_audio(tmp_path / "stereo8k.wav")
    assert rate == 16000 and loaded.shape == (1, 16000)
    if shutil.which("sox") is None:
        pytest.skip("the sox program is not installed (apt-get install sox)")
    padded = np.concatenate([np.zeros(8000), 0.5 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)])
    sf.write(tmp_path / "silence.wav", padded.astype(np.float32), 16000)
    vad = [["channels", "1"], ["rate", "16000"], ["gain", "-3.0"], ["silence", "1", "0.1", "0.1%", "-1", "0.1", "0.1%"]]
    trimmed, _ = compat.apply_effects_file(tmp_path / "silence.wav", vad)
    assert 15000 <= trimmed.shape[1] <= 16500  # the 0.5 s of leading silence is gone


def test_launcher_argument_rules(tmp_path, monkeypatch) -> None:
    with pytest.raises(LauncherError, match="ships no config for -d quesst14_dtw"):
        s3prl_arguments(["-m", "train", "-u", "wavlm", "-d", "quesst14_dtw", "-n", "x"])
    with pytest.raises(LauncherError, match="-d asv needs --data-root"):
        s3prl_arguments(["-m", "train", "-u", "learn2diss_local", "-k", "ckpt", "-d", "asv", "-p", str(tmp_path / "x")])
    # s3prl's task names are ours where unambiguous; ctc is two tasks
    with pytest.raises(LauncherError, match="-d sid needs --data-root"):
        s3prl_arguments(["-m", "train", "-u", "wavlm", "-d", "voxceleb1", "-n", "x"])
    with pytest.raises(LauncherError, match="-d pr .* or -d sf"):
        s3prl_arguments(["-m", "train", "-u", "wavlm", "-d", "ctc", "-n", "x"])
    args = s3prl_arguments(["-m", "evaluate", "-e", "run/dev-best.ckpt", "--local-rank=1", "-t", "test"])
    assert args[args.index("--local_rank") + 1] == "1" and args[args.index("-e") + 1] == "run/dev-best.ckpt"
    assert args[args.index("-t") + 1] == "test" and "--local-rank=1" not in args
    monkeypatch.setenv("LOCAL_RANK", "3")
    args = s3prl_arguments(["-m", "evaluate", "-e", "run/dev-best.ckpt", "--device", "cpu"])
    assert args[args.index("--local_rank") + 1] == "3" and args[args.index("--device") + 1] == "cpu"


def test_launcher_defaults_for_newcomers(tmp_path, monkeypatch) -> None:
    from learn2diss.downstream_runs.launcher import cap_workers, default_test_split

    config = {"downstream_expert": {"datarc": {"num_workers": 8, "batch_size": 32}, "corpus": {"num_workers": 1}}}
    cap_workers(config, 2)
    assert config["downstream_expert"]["datarc"] == {"num_workers": 2, "batch_size": 32}
    assert config["downstream_expert"]["corpus"]["num_workers"] == 1
    # ASR's evaluate needs -t test-clean: chosen from the task config the launcher wrote beside the checkpoint
    (tmp_path / "learn2diss_asr.yaml").write_text("runner: {}\n")
    assert default_test_split(tmp_path / "states-20.ckpt") == "test-clean"
    args = s3prl_arguments(["-m", "evaluate", "-e", str(tmp_path / "states-20.ckpt"), "--device", "cpu"])
    assert args[args.index("-t") + 1] == "test-clean"
    args = s3prl_arguments(["-m", "evaluate", "-e", str(tmp_path / "states-20.ckpt"), "-t", "dev-clean"])
    assert args[args.index("-t") + 1] == "dev-clean"


def test_run_downstream_layout_error_is_one_line_and_help_shows_ours(tmp_path) -> None:
    import subprocess
    import sys

    from superb_fixtures import REPO

    (tmp_path / "VoxCeleb1" / "dev" / "wav").mkdir(parents=True)
    result = subprocess.run([sys.executable, str(REPO / "run_downstream.py"), "-m", "train", "-u", "learn2diss_local",
                             "-k", "ckpt", "-d", "sv_voxceleb1", "-p", str(tmp_path / "run"), "--data-root",
                             str(tmp_path), "--device", "cpu"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()  # -d sv_voxceleb1 is our asv: its layout is checked
    assert line.startswith("run_downstream.py: error: missing VoxCeleb1 training audio: no ")
    assert str(tmp_path / "VoxCeleb1" / "dev" / "wav") in line
    shown = subprocess.run([sys.executable, str(REPO / "run_downstream.py"), "-h"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert shown.stdout.index("--upstream") < shown.stdout.index("learn2diss additions") < shown.stdout.index("--data-root")


def test_every_pr_sf_loader_keeps_the_worker_cap(monkeypatch) -> None:
    """s3prl's ctc load_dataset pops num_workers from the corpus config: without the fix only the train loader
    kept the capped value and dev/test started 12 workers."""
    import importlib

    expert = importlib.import_module("s3prl.downstream.ctc.expert")
    seen = []

    def popping(split, tokenizer, corpus):  # what s3prl's load_dataset does with the config
        seen.append(corpus.pop("num_workers", 12))

    monkeypatch.setattr(expert, "load_dataset", popping)
    compat.keep_ctc_worker_cap()
    corpus = {"name": "libriphone", "num_workers": 2}
    for split in ("train", "dev", "test"):
        expert.load_dataset(split, None, corpus)
    assert seen == [2, 2, 2] and corpus["num_workers"] == 2
