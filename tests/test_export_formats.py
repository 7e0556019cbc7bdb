"""The frame path exported as a plain parent checkpoint, loaded by code this project did not write.

Random tiny models of every kind (and the layer-norm / normalising variants) are exported in both formats and
compared on every frame hidden state with what the other library computes from the export: ``transformers``
(``AutoModel.from_pretrained`` of the Hugging Face folder), s3prl's own entry for the kind (``hubert_local``,
``wavlm_local``, ``wav2vec2_local``, ``data2vec_local``) and ``S3PRLUpstream`` on the fairseq ``model.pt``. Ours
runs a padded batch; the references run each utterance alone (their exact result), and ``transformers`` runs the
padded batch too where it is padding-invariant (layer-norm convolutions with an attention mask). Our importer
reads each export back as a parent with equal hidden states.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_, tiny_config

from learn2diss.cli import main
from learn2diss.errors import UsageError
from learn2diss.upstream.checkpoints import (
    FAIRSEQ_FILE,
    CheckpointError,
    export_frame_path,
    import_parent,
    read_parent,
)
from learn2diss.upstream.config import ModelConfig
from learn2diss.upstream.model import Learn2Diss

CONV = ((16, 10, 5), (16, 4, 4), (16, 4, 4), (16, 4, 4))  # a 320-sample stride: s3prl's experts assume it
# variant -> (kind, layer-norm convolutions, layer_norm_first, waveform normalisation, positional conv layers)
VARIANTS = {
    "hubert": ("hubert", False, False, False, 1),
    "hubert_large": ("hubert", True, True, True, 1),
    "hubert_layer_norm_raw": ("hubert", True, False, False, 1),  # the demo parent's: raw waveform, layer norms
    "wavlm": ("wavlm", False, False, False, 1),
    "wavlm_large": ("wavlm", True, True, True, 1),
    "wav2vec2": ("wav2vec2", False, False, False, 1),
    "data2vec": ("data2vec", True, False, True, 2),
}
S3PRL_ENTRY = {"hubert": "hubert_local", "wavlm": "wavlm_local", "wav2vec2": "wav2vec2_local",
               "data2vec": "data2vec_local"}
TOLERANCE = 1e-5
LENGTHS = (8000, 5000)  # samples: a padded batch of two


def tiny_model(variant: str) -> Learn2Diss:
    """A random 3-layer, 32-d model of ``variant`` with N = 1 frozen layer (f and g both hold layers)."""
    kind, layer_norm, first, normalize, depth = VARIANTS[variant]
    base = tiny_config(kind, 1)
    parent = dataclasses.replace(
        base.parent, conv_layers=CONV, extractor_mode="layer_norm" if layer_norm else "group_norm",
        layer_norm_first=first, normalize_waveform=normalize, pos_conv_layers=depth,
        pos_conv_kernel=5 if depth > 1 else 16)
    torch.manual_seed(0)
    return randomize_(Learn2Diss(ModelConfig(parent, base.frame, base.utterance))).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances at a recording's level (normalisation is far from the identity), zero-padded, and lengths."""
    wav = 0.1 * torch.randn(2, max(LENGTHS), generator=torch.Generator().manual_seed(1)) + 0.02
    wav[1, LENGTHS[1]:] = 0.0
    return wav, torch.tensor(LENGTHS)


@pytest.fixture(scope="module")
def audio() -> tuple[torch.Tensor, torch.Tensor]:
    return padded_batch()


def export_variant(variant: str, folder: Path, audio: tuple[torch.Tensor, torch.Tensor]):
    """Export ``variant`` to ``folder/huggingface`` and ``folder/fairseq``; (model, our padded-batch hidden states,
    valid frames per utterance)."""
    wav, lengths = audio
    model = tiny_model(variant)
    export_frame_path(model, folder / "huggingface", "huggingface")
    export_frame_path(model, folder / "fairseq", "fairseq")
    with torch.no_grad():
        features = model.extract(wav, lengths)
        ours = model.frame_hidden_states(features)
    return model, ours, features.lengths.tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, audio):
    """variant -> (model, our hidden states, valid frames, the folder holding both exports), made once per module."""
    cache = {}

    def get(variant: str):
        if variant not in cache:
            folder = tmp_path_factory.mktemp(variant)
            cache[variant] = (*export_variant(variant, folder, audio), folder)
        return cache[variant]

    return get


def max_diff(theirs: list[torch.Tensor], ours: list[torch.Tensor], i: int, frames: int, row: int = 0) -> float:
    """Max |Δ| over every hidden state of utterance ``i`` (``theirs`` holds it at ``row``), valid frames only."""
    assert len(theirs) == len(ours) == 4  # input of layer 1 + 3 layers
    return max((a[row, :frames] - b[i, :frames]).abs().max().item() for a, b in zip(theirs, ours, strict=True))


def transformers_differences(hf, model, ours, frames, audio) -> tuple[float, float | None]:
    """(each utterance alone, the padded batch or None where transformers is not padding-invariant) for ``hf``,
    the ``transformers`` model loaded from the export."""
    wav, lengths = audio
    normalize = model.config.parent.normalize_waveform
    alone = []
    for i, n in enumerate(lengths.tolist()):
        x = wav[i : i + 1, :n]
        x = F.layer_norm(x, x.shape[1:]) if normalize else x  # fairseq's normalisation (HF's extractor: eps 1e-7)
        with torch.no_grad():
            alone.append(max_diff(hf(x, output_hidden_states=True).hidden_states, ours, i, frames[i]))
    parent = model.config.parent
    if parent.extractor_mode != "layer_norm" or parent.pos_conv_layers > 1:
        return max(alone), None  # group norm over the padding; data2vec's stacked convolution sees it
    x = torch.nn.utils.rnn.pad_sequence([F.layer_norm(w[:n], (n,)) if normalize else w[:n]
                                         for w, n in zip(wav, lengths.tolist(), strict=True)], batch_first=True)
    mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        hidden = hf(x, attention_mask=mask, output_hidden_states=True).hidden_states
    return max(alone), max(max_diff(hidden, ours, i, frames[i], row=i) for i in range(2))


def s3prl_entry_difference(model, ours, frames, folder, audio) -> float:
    import s3prl.hub

    wav, lengths = audio
    expert = getattr(s3prl.hub, S3PRL_ENTRY[model.config.parent.kind])(ckpt=str(folder / "fairseq" / FAIRSEQ_FILE))
    expert.eval()
    diffs = []
    for i, n in enumerate(lengths.tolist()):
        with torch.no_grad():
            diffs.append(max_diff(expert([wav[i, :n]])["hidden_states"], ours, i, frames[i]))
    return max(diffs)


def s3prl_upstream_difference(model, ours, frames, folder, audio) -> float:
    from s3prl.nn import S3PRLUpstream

    wav, lengths = audio
    upstream = S3PRLUpstream(S3PRL_ENTRY[model.config.parent.kind], path_or_url=str(folder / "fairseq" / FAIRSEQ_FILE))
    upstream.eval()  # S3PRLUpstream leaves its upstream in training mode
    diffs = []
    for i, n in enumerate(lengths.tolist()):
        with torch.no_grad():
            hidden, _ = upstream(wav[i : i + 1, :n], lengths[i : i + 1])
        diffs.append(max_diff(hidden, ours, i, frames[i]))
    return max(diffs)


def s3prl_huggingface_entry_difference(model, ours, frames, folder, audio) -> float:
    """s3prl's ``hf_hubert_custom`` / ``hf_wav2vec2_custom`` (transformers inside, with the exported feature
    extractor) on each utterance alone."""
    import s3prl.hub

    wav, lengths = audio
    expert = getattr(s3prl.hub, f"hf_{model.config.parent.kind}_custom")(str(folder / "huggingface")).eval()
    diffs = []
    for i, n in enumerate(lengths.tolist()):
        with torch.no_grad():
            diffs.append(max_diff(expert([wav[i, :n]])["hidden_states"], ours, i, frames[i]))
    return max(diffs)


def round_trip_difference(model, ours, folder, audio, fmt: str) -> float:
    wav, lengths = audio
    path = folder / fmt
    parent, _ = read_parent(path)
    assert parent == model.config.parent
    copy = Learn2Diss(model.config)
    import_parent(copy, path)
    copy.eval()
    assert torch.equal(copy.g.mask_embedding, model.g.mask_embedding)
    with torch.no_grad():
        again = copy.frame_hidden_states(copy.extract(wav, lengths))
    return max((a - b).abs().max().item() for a, b in zip(again, ours, strict=True))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_huggingface_export_matches_transformers(variant, exported, audio):
    import transformers

    model, ours, frames, folder = exported(variant)
    hf = transformers.AutoModel.from_pretrained(folder / "huggingface").eval()
    assert type(hf).__name__ == {"hubert": "HubertModel", "wavlm": "WavLMModel", "wav2vec2": "Wav2Vec2Model",
                                 "data2vec": "Data2VecAudioModel"}[model.config.parent.kind]
    alone, padded = transformers_differences(hf, model, ours, frames, audio)
    assert alone <= TOLERANCE, f"{variant}: max |Δ| {alone:.2e}"
    assert padded is None or padded <= TOLERANCE, f"{variant}, padded batch: max |Δ| {padded:.2e}"
    parent = model.config.parent
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder / "huggingface")
    assert (extractor.sampling_rate, extractor.do_normalize) == (16000, parent.normalize_waveform)
    assert extractor.return_attention_mask == (parent.extractor_mode == "layer_norm")
    assert torch.equal(hf.masked_spec_embed.detach(), model.g.mask_embedding.detach())


# s3prl's entries for Hugging Face folders exist for these kinds; they normalise with transformers' extractor
# (eps 1e-7, not fairseq's 1e-5), so the variants without normalisation are compared
HF_ENTRY_VARIANTS = [v for v in VARIANTS if VARIANTS[v][0] in ("hubert", "wav2vec2") and not VARIANTS[v][3]]


@pytest.mark.parametrize("variant", HF_ENTRY_VARIANTS)
def test_huggingface_export_matches_s3prls_hf_entry(variant, exported, audio):
    model, ours, frames, folder = exported(variant)
    diff = s3prl_huggingface_entry_difference(model, ours, frames, folder, audio)
    assert diff <= TOLERANCE, f"{variant}, hf_{model.config.parent.kind}_custom: max |Δ| {diff:.2e}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fairseq_export_matches_the_s3prl_entry_and_s3prl_upstream(variant, exported, audio):
    model, ours, frames, folder = exported(variant)
    checkpoint = torch.load(folder / "fairseq" / FAIRSEQ_FILE, weights_only=True)  # plain tensors and dicts only
    mask = checkpoint["model"]["mask_emb"]
    assert torch.equal(mask, model.g.mask_embedding.detach())
    entry = s3prl_entry_difference(model, ours, frames, folder, audio)
    assert entry <= TOLERANCE, f"{variant}, {S3PRL_ENTRY[model.config.parent.kind]}: max |Δ| {entry:.2e}"
    upstream = s3prl_upstream_difference(model, ours, frames, folder, audio)
    assert upstream <= TOLERANCE, f"{variant}, S3PRLUpstream: max |Δ| {upstream:.2e}"


@pytest.mark.parametrize("fmt", ["huggingface", "fairseq"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_reads_back_as_the_same_parent(variant, fmt, exported, audio):
    model, ours, _, folder = exported(variant)
    assert round_trip_difference(model, ours, folder, audio, fmt) == 0.0


ESPNET_PROGRAM = """
import sys
import torch
import yaml
from espnet2.asr.frontend.s3prl import S3prlFrontend
config = yaml.safe_load(open(sys.argv[1]))
frontend = S3prlFrontend(**config["frontend_conf"])  # what ESPnet's ASR task builds from the config
feats, lengths = frontend(torch.randn(2, 16000), torch.tensor([16000, 8000]))
print(tuple(feats.shape), lengths.tolist(), frontend.output_size())
"""


def test_espnet_frontend_config_of_the_docs(exported, tmp_path):
    """ESPnet's S3prlFrontend from docs/release.md's config on a fairseq export, in a process without learn2diss
    (skipped where espnet is not installed: it is not a dependency)."""
    import subprocess
    import sys

    import yaml

    pytest.importorskip("espnet2.asr.frontend.s3prl")
    _, _, _, folder = exported("hubert")
    text = (Path(__file__).resolve().parents[1] / "docs" / "release.md").read_text()
    block = re.search(r"release frontend config.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert block, "docs/release.md has no ESPnet frontend config block"
    config = yaml.safe_load(block[1])
    config["frontend_conf"]["frontend_conf"]["path_or_url"] = str(folder / "fairseq" / FAIRSEQ_FILE)
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-c", ESPNET_PROGRAM, str(tmp_path / "asr.yaml")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(2, 50, 32) [50, 25] 32"


def test_what_a_format_cannot_hold_is_named(tmp_path):
    model = tiny_model("data2vec")
    single = Learn2Diss(ModelConfig(dataclasses.replace(model.config.parent, pos_conv_layers=1),
                                    model.config.frame, model.config.utterance))
    with pytest.raises(CheckpointError, match="pos_conv_layers 1 .*has no huggingface layout"):
        export_frame_path(single, tmp_path / "hf", "huggingface")
    stacked = Learn2Diss(ModelConfig(dataclasses.replace(tiny_model("hubert").config.parent, pos_conv_layers=2),
                                     model.config.frame, model.config.utterance))
    for fmt in ("huggingface", "fairseq"):
        with pytest.raises(CheckpointError, match="a hubert parent with pos_conv_layers 2"):
            export_frame_path(stacked, tmp_path / fmt, fmt)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_export_command_writes_a_model_card(tmp_path):
    """`learn2diss export CKPT --format huggingface` on one of our checkpoints, results rows found by their hash."""
    from learn2diss.eval.results import ResultRow, append_rows, checkpoint_hash
    from learn2diss.upstream.checkpoints import save_model

    model = tiny_model("hubert")
    save_model(model, tmp_path / "ckpt")
    digest = checkpoint_hash(tmp_path / "ckpt")
    append_rows(tmp_path / "results" / "abx.csv", [
        ResultRow("abx", "tiny", "dev-clean", "within", "abx_error", 12.5, features="frame:last",
                  checkpoint=str(tmp_path / "ckpt"), checkpoint_hash=digest, details="zrc_abx2 distance=cosine"),
        ResultRow("abx", "other", "dev-clean", "within", "abx_error", 40.0, checkpoint_hash="0" * 12)])
    out = tmp_path / "hf"
    argv = ["export", str(tmp_path / "ckpt"), "--format", "huggingface", "--out", str(out),
            "--results", str(tmp_path / "results")]
    with pytest.raises(UsageError, match="the parent's licence is not known"):
        main(argv)
    assert not out.exists()
    assert main([*argv, "--license", "mit"]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    assert "| dev-clean | within | abx_error | 12.5 | frame:last |" in card and "40" not in card.split("## Evaluations")[1].split("## Intended")[0]
    assert "`learn2diss eval abx`" in card and digest in card
    for part in ("h (the ECAPA-TDNN utterance encoder)", "W_g", "W_h", "A^l", "masked_spec_embed", "arXiv:2407.02543"):
        assert part in card
    assert json.loads((out / "config.json").read_text())["architectures"] == ["HubertModel"]
    assert main(["export", str(tmp_path / "ckpt"), "--format", "fairseq", "--out", str(tmp_path / "fs"),
                 "--license", "mit"]) == 0
    assert "hubert_local" in (tmp_path / "fs" / "README.md").read_text()
    assert read_parent(tmp_path / "fs")[0] == model.config.parent


def test_fairseq_parent_licence_is_fairseqs(tmp_path):
    """A run whose parent is a fairseq HuBERT file gets fairseq's licence in its card without --license."""
    from learn2diss.pretrain.model_card import trace_parent
    from learn2diss.upstream.checkpoints import export_frame_path as write

    write(tiny_model("hubert"), tmp_path / "parent", "fairseq")
    lineage = trace_parent(str(tmp_path / "parent" / FAIRSEQ_FILE))
    assert lineage.license == "mit" and "fairseq" in lineage.license_source
    assert trace_parent("random").license is None

