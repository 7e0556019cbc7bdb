"""CTC: letter vocabulary, a toy 4-gram fixing a hypothesis, a tiny fine-tune lowering the loss, the command.

Resume after a kill, NaN skipping and the checkpoint reader: tests/test_ctc_training.py."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import tiny_50hz_config, tiny_checkpoint, write_librispeech

from learn2diss.cli import main
from learn2diss.eval.ctc.config import CtcConfig, FinetuneConfig, load_ctc_config
from learn2diss.eval.ctc.data import CtcDataset, collate_ctc, read_transcribed_folder
from learn2diss.eval.ctc.decode import (
    DecodeConfig,
    LexiconLMDecoder,
    viterbi_decode,
    word_error_rate,
)
from learn2diss.eval.ctc.finetune import CtcModel, finetune
from learn2diss.eval.ctc.lexicon import read_word_list
from learn2diss.eval.ctc.vocab import INDEX, TOKENS, encode, greedy_decode
from learn2diss.eval.results import read_rows
from learn2diss.schema import ConfigError
from learn2diss.training.config import TrainConfig, TriStageOptimizerConfig
from learn2diss.upstream.model import Learn2Diss


def write_arpa(path: Path, sentences: list[str], order: int = 4, backoff: float = -0.5) -> Path:
    """A maximum-likelihood n-gram LM in ARPA format with a constant back-off weight (no lmplz needed)."""
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = ["<s>", *sentence.split(), "</s>"]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                counts[n - 1][tuple(words[i : i + n])] += 1
    total = sum(c for gram, c in counts[0].items() if gram != ("<s>",))
    lines = ["\\data\\"] + [f"ngram {n + 1}={len(counts[n]) + (n == 0)}" for n in range(order)]
    for n in range(order):
        lines += ["", f"\\{n + 1}-grams:"] + ([f"-5.0\t<unk>\t{backoff}"] if n == 0 else [])
        for gram, c in sorted(counts[n].items()):
            if n == 0:
                prob = -99.0 if gram == ("<s>",) else math.log10(c / total)
            else:
                prob = math.log10(c / counts[n - 1][gram[:-1]])
            lines.append(f"{prob:.4f}\t{' '.join(gram)}" + (f"\t{backoff}" if n < order - 1 else ""))
    path.write_text("\n".join([*lines, "", "\\end\\", ""]))
    return path


def decode_config(**changes) -> DecodeConfig:
    """The decode section of ctc_10h (torchaudio's HuBERT example) with ``changes``."""
    return dataclasses.replace(load_ctc_config("ctc_10h")[1].decode, **changes)


SENTENCES = ["the cat sat"] * 3 + ["the car"] + ["a cat sat on the mat"]
WORDS = ["the", "cat", "sat", "car", "a", "on", "mat"]


def emissions_for(frames: list[dict[str, float]]) -> np.ndarray:
    out = []
    for dist in frames:
        p = np.full(len(TOKENS), 1e-4)
        for token, value in dist.items():
            p[INDEX[token]] = value
        out.append(np.log(p / p.sum()))
    return np.array(out, dtype=np.float32)


def test_vocabulary_has_29_letters_and_round_trips():
    assert len(TOKENS) == 29 and TOKENS[:3] == ("-", "|", "'")
    ids = encode("DON'T  Stop")
    assert [TOKENS[i] for i in ids] == list("don't|stop|")
    assert greedy_decode([0, ids[0], ids[0], 0, *ids[1:]]) == "don't stop"
    with pytest.raises(ValueError, match="outside the CTC vocabulary"):
        encode("naïve")


def test_toy_4gram_turns_out_of_lexicon_hypothesis_into_word(tmp_path):
    lm = write_arpa(tmp_path / "toy.arpa", SENTENCES)
    # acoustically: "the ca?" where ? is e (0.6) > r (0.25) > t (0.15), then "sat"
    em = emissions_for([{"t": 1}, {"-": 1}, {"h": 1}, {"e": 1}, {"|": 1}, {"c": 1}, {"-": 1}, {"a": 1},
                        {"e": 0.6, "r": 0.25, "t": 0.15}, {"|": 1}, {"s": 1}, {"a": 1}, {"t": 1}, {"|": 1}])
    assert viterbi_decode(em) == "the cae sat"  # "cae" is not a word
    with_lm = LexiconLMDecoder(WORDS, lm, decode_config(beam=50, lm_weight=2.0, word_score=0.0))
    without_lm = LexiconLMDecoder(WORDS, lm, decode_config(beam=50, lm_weight=0.0, word_score=0.0))
    assert without_lm(em) == "the car sat"  # the lexicon alone picks the acoustically closest word
    assert with_lm(em) == "the cat sat"  # the 4-gram prefers "the cat sat"


def test_upper_case_lm_and_word_list_as_librispeech_ships_them(tmp_path):
    """LibriSpeech's 4-gram and vocabulary are upper case: the words name the LM's words as written (a lower-cased
    word list would find none of them and decode without the LM); hypotheses come out lower case."""
    from learn2diss.cli import main

    (tmp_path / "text.txt").write_text("\n".join(s.upper() for s in SENTENCES) + "\n")
    assert main(["data", "lm", "--text", str(tmp_path / "text.txt"), "--out", str(tmp_path / "lm")]) == 0
    words = read_word_list(tmp_path / "lm" / "words.txt")
    assert words[:2] == ["THE", "CAT"] and "cat" not in words  # by count, case kept
    assert (tmp_path / "lm" / "lexicon.txt").read_text().splitlines()[1] == "CAT\tc a t |"
    em = emissions_for([{"t": 1}, {"-": 1}, {"h": 1}, {"e": 1}, {"|": 1}, {"c": 1}, {"-": 1}, {"a": 1},
                        {"e": 0.6, "r": 0.25, "t": 0.15}, {"|": 1}, {"s": 1}, {"a": 1}, {"t": 1}, {"|": 1}])
    decoder = LexiconLMDecoder(words, tmp_path / "lm" / "4-gram.arpa", decode_config(beam=50, lm_weight=2.0,
                                                                                    word_score=0.0))
    assert decoder(em) == "the cat sat"


def test_data_lm_reads_transcripts_and_leaves_out_unspellable_sentences(tmp_path, capsys):
    from learn2diss.cli import main

    write_librispeech(tmp_path / "train", {"11": ["THE CAT SAT", "THE CAR"], "22": ["A CAT SAT ON THE MAT", "NAÏVE"]})
    assert main(["data", "lm", "--transcripts", str(tmp_path / "train"), "--order", "3", "--out",
                 str(tmp_path / "lm")]) == 0
    assert "left out 1 sentences" in capsys.readouterr().err
    arpa = (tmp_path / "lm" / "3-gram.arpa").read_text()
    assert "ngram 3=" in arpa and "\tCAT SAT ON" in arpa
    assert (tmp_path / "lm" / "sentences.txt").read_text().splitlines() == ["THE CAT SAT", "THE CAR",
                                                                          "A CAT SAT ON THE MAT"]


def test_wer_uses_jiwer_counts():
    assert word_error_rate(["the cat sat", "a mat"], ["the cat", "a hat"]) == pytest.approx(100 * 2 / 5)


def test_tri_stage_schedule():
    """fairseq's tri-stage schedule, a schedule of the training loop (ctc_10h: 2k / 8k / 10k of 20k updates)."""
    finetune_cfg = load_ctc_config("ctc_10h")[1].finetune
    config, total = finetune_cfg.optimizer, finetune_cfg.max_updates
    assert config.schedule == "tri_stage" and config.betas == (0.9, 0.98) and config.eps == 1e-8
    assert config.learning_rate(0, total) == pytest.approx(5e-7)
    assert config.learning_rate(1000, total) == pytest.approx(5e-7 + (5e-5 - 5e-7) / 2)
    assert config.learning_rate(2000, total) == config.learning_rate(9999, total) == pytest.approx(5e-5)
    assert config.learning_rate(15000, total) == pytest.approx(5e-5 * math.sqrt(0.05))
    assert config.learning_rate(30000, total) == pytest.approx(5e-5 * 0.05)


def test_every_packaged_ctc_config_loads_and_the_yaml_is_the_one_source():
    for name in ("ctc_1h", "ctc_10h", "ctc_100h", "ctc_demo"):
        config = load_ctc_config(name)[1]
        assert config.finetune.optimizer.schedule == "tri_stage" and config.train.max_nonfinite_steps > 0
        assert config.decode.unk_score == -math.inf and config.decode.beam_size_token == len(TOKENS)
    classes = [CtcConfig, FinetuneConfig, TriStageOptimizerConfig, TrainConfig, DecodeConfig]
    assert [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c)
            if f.default is not dataclasses.MISSING] == []  # no default in a dataclass: a missing key is an error
    with pytest.raises(ConfigError, match=r"finetune.max_seconds = 50.*in \(0, batch_seconds = 40"):
        load_ctc_config("ctc_demo", ["finetune.max_seconds=50"])


def test_a_schedule_that_does_not_span_the_updates_is_refused():
    """--set finetune.max_updates=40 alone leaves a 300-update tri-stage schedule: refused, with the --set that fits."""
    with pytest.raises(ConfigError, match=r"30 \+ hold_steps 120 \+ decay_steps 150 = 300 updates\) does not span "
                                          r"finetune.max_updates = 40.*warmup_steps=4 .*hold_steps=16 .*decay_steps=20"):
        load_ctc_config("ctc_demo", ["finetune.max_updates=40", "finetune.freeze_updates=10"])
    with pytest.raises(ConfigError, match="freeze_updates = 50, must be < max_updates = 40"):
        load_ctc_config("ctc_demo", ["finetune.max_updates=40", "finetune.optimizer.warmup_steps=4",
                                     "finetune.optimizer.hold_steps=16", "finetune.optimizer.decay_steps=20"])
    fits = ["finetune.max_updates=40", "finetune.freeze_updates=10", "finetune.optimizer.warmup_steps=4",
            "finetune.optimizer.hold_steps=16", "finetune.optimizer.decay_steps=20"]
    assert load_ctc_config("ctc_demo", fits)[1].finetune.max_updates == 40
    # YAML 1.1 reads 1e-3 as text (it wants 1.0e-3): a float key takes it as the number it spells
    assert load_ctc_config("ctc_demo", ["finetune.optimizer.lr=1e-3"])[1].finetune.optimizer.lr == 1e-3


def test_config_unknown_key_is_named(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text((Path(__file__).parents[1] / "learn2diss/configs/ctc/ctc_demo.yaml").read_text().replace("lr:", "lrr:", 1))
    with pytest.raises(ConfigError, match=r"my.yaml: unknown key\(s\) finetune.optimizer.lrr"):
        load_ctc_config(path)
    with pytest.raises(ConfigError, match="finetune.nope"):
        load_ctc_config("ctc_demo", ["finetune.nope=1"])
    path.write_text((Path(__file__).parents[1] / "learn2diss/configs/ctc/ctc_demo.yaml").read_text().replace("  sil_score: 0.0\n", ""))
    with pytest.raises(ConfigError, match=r"my.yaml: missing key\(s\) decode.sil_score"):
        load_ctc_config(path)


def tri_stage_steps(updates: int) -> dict[str, int]:
    """fairseq's 10/40/50 % tri-stage phases of ``updates``."""
    warmup, hold = round(0.1 * updates), round(0.4 * updates)
    return {"warmup_steps": warmup, "hold_steps": hold, "decay_steps": updates - warmup - hold}


def tiny_schedule(updates: int) -> list[str]:
    """``--set`` arguments for a fine-tune of ``updates`` updates, g unfrozen after the first."""
    sets = {"finetune.max_updates": updates, "finetune.freeze_updates": 1,
            **{f"finetune.optimizer.{k}": v for k, v in tri_stage_steps(updates).items()}}
    return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def tiny_config(**changes) -> CtcConfig:
    """A CTC config for 1-s utterances on the CPU; ``changes`` name keys of the finetune, optimizer or train section.
    The tri-stage phases span max_updates (10/40/50 %) unless ``changes`` names them."""
    if not {"warmup_steps", "hold_steps", "decay_steps"} & set(changes):
        changes = {**tri_stage_steps(changes.get("max_updates", 25)), **changes}
    optimizer = dict(lr=2e-3, schedule="tri_stage", initial_lr=2e-4, final_lr=1e-3, warmup_steps=2, hold_steps=20,
                     decay_steps=3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.0, clip_grad_norm=10.0)
    finetune_cfg = dict(max_updates=25, freeze_updates=0, head_lr_scale=1.0, batch_seconds=4.0, grad_accum=1, mask_prob=0.0,
                        mask_length=2, max_seconds=4.0, num_workers=0)
    train = dict(seed=0, checkpoint_every=10, keep_checkpoints=2, log_every=1, max_nonfinite_steps=3, precision="fp32",
                 compile="none")
    for key, value in changes.items():
        next(section for section in (optimizer, finetune_cfg, train) if key in section)[key] = value
    return CtcConfig(FinetuneConfig(**finetune_cfg, optimizer=TriStageOptimizerConfig(**optimizer)),
                     TrainConfig(**train), decode_config())


def ctc_loss(ctc: CtcModel, utterances) -> float:
    batch = collate_ctc([CtcDataset(utterances)[(i, 0, 0)] for i in range(len(utterances))])
    with torch.no_grad():
        log_probs, frames = ctc.eval()(batch.waveforms, batch.lengths, mask=False)
        return float(torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), batch.targets, frames,
                                                  batch.target_lengths))


def logged(run: Path) -> list[dict]:
    """The trainer's metrics.jsonl records of a CTC run folder."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_finetune_lowers_ctc_loss_and_resumes(tmp_path):
    write_librispeech(tmp_path / "train", {"11": ["A CAT", "THE MAT"], "22": ["A HAT", "ON IT"]}, seconds=1.0)
    train = read_transcribed_folder(tmp_path / "train")
    torch.manual_seed(0)
    model = Learn2Diss(tiny_50hz_config())
    frozen = {k: v.clone() for k, v in model.f.state_dict().items()}
    before = ctc_loss(CtcModel(model), train)  # a fresh head: same init as finetune's (seeded)
    torch.manual_seed(0)
    ctc = finetune(model, train, tiny_config(max_updates=20), tmp_path / "run")
    after = ctc_loss(ctc, train)
    assert [m["step"] for m in logged(tmp_path / "run")] == list(range(1, 21)) and after < 0.5 * before
    assert all(torch.equal(v, model.f.state_dict()[k]) for k, v in frozen.items())  # f frozen

    finetune(Learn2Diss(tiny_50hz_config()), train, tiny_config(max_updates=22), tmp_path / "run")
    assert [m["step"] for m in logged(tmp_path / "run")] == list(range(1, 23))  # continued from update 20
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000020.pt",
                                                                                  "step_0000022.pt"]


def test_ctc_command_end_to_end(tmp_path):
    write_librispeech(tmp_path / "data" / "train", {"11": ["THE CAT SAT", "THE CAR"]}, seconds=1.0)
    write_librispeech(tmp_path / "data" / "dev-clean", {"22": ["THE CAT SAT"]}, seconds=1.0)
    lm = write_arpa(tmp_path / "toy.arpa", SENTENCES)
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    assert main(["eval", "ctc", "--checkpoint", str(ckpt), "--config", "ctc_demo", *tiny_schedule(3),
                 "--set", "finetune.batch_seconds=4", "--set", "finetune.max_seconds=4", "--set", "decode.beam=20", "--train",
                 str(tmp_path / "data" / "train"), "--eval-sets", "dev-clean", "--data-root", str(tmp_path / "data"),
                 "--lm", str(lm), "--words", str(words), "--condition", "1h", "--model-name", "L2D-W12",
                 "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")]) == 0
    rows = {r.metric: r for r in read_rows(tmp_path / "results" / "ctc.csv")}
    assert set(rows) == {"wer", "wer_viterbi", "blank_rate"} and 0 <= rows["blank_rate"].value <= 100
    assert rows["wer"].dataset == "dev-clean" and rows["wer"].condition == "1h" and rows["wer"].value >= 0
    hyp = (tmp_path / "results" / "ctc" / "L2D-W12" / "1h" / "dev-clean.hyp.txt").read_text().split("\t")
    assert hyp[0] == "22-100-0000" and set(hyp[1].split()) <= set(WORDS)  # lexicon decoding emits only words
