"""The model card (README.md) of an exported frame encoder, generated from the pretraining run.

What it says comes from files, never from memory: the architecture from the checkpoint's config, the parent
from the run's ``init/config.yaml`` (followed through our own checkpoints to where it started), the data and
steps from the run's resolved ``config.yaml``, ``run.json`` and the stages' ``done.json``, and the evaluations
from results CSVs whose rows carry the exported weights' hash (``checkpoint_hash``, the hash that
``learn2diss eval …``, the demo and the study record). The licence is the parent's: a Hugging Face parent's
card states it; fairseq's released HuBERT, wav2vec 2.0 and data2vec checkpoints are MIT ("The license applies to
the pre-trained models as well", fairseq's README); for any other parent it must be given (``--license``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learn2diss.errors import UsageError
from learn2diss.upstream.checkpoints import frame_path

CITATION = """@article{krishna2024learn2diss,
  title   = {Towards the Next Frontier in Speech Representation Learning Using Disentanglement},
  author  = {Krishna, Varun and Ganapathy, Sriram},
  journal = {arXiv preprint arXiv:2407.02543},
  year    = {2024}
}"""
FAIRSEQ_LICENSE = ("mit", "fairseq's README: fairseq(-py) is MIT-licensed, and the license applies to the "
                   "pre-trained models as well")
HF_CLASSES = {"hubert": "HubertModel", "wavlm": "WavLMModel", "wav2vec2": "Wav2Vec2Model",
              "data2vec": "Data2VecAudioModel"}
S3PRL_ENTRIES = {"hubert": "hubert_local", "wavlm": "wavlm_local", "wav2vec2": "wav2vec2_local",
                 "data2vec": "data2vec_local"}
# Results files and the command that writes them (the eval column of learn2diss result rows).
PRODUCERS = {"abx": "learn2diss eval abx", "purity": "learn2diss eval purity", "probes": "learn2diss eval probes",
             "ctc": "learn2diss eval ctc", "superb": "learn2diss superb run"}
_MEASURE = ("eval", "setting", "seed", "dataset", "split", "condition", "metric", "value", "features")
_PROVENANCE = ("checkpoint", "date", "git_commit", "config", "overrides", "details")


@dataclass
class Lineage:
    """Where the exported weights came from: the chain of parents (newest first) and the licence."""

    steps: list[str] = field(default_factory=list)
    license: str | None = None
    license_source: str = ""


def _read_yaml(path: Path) -> dict:
    from learn2diss.io import read_yaml

    return (read_yaml(path, "config") or {}) if path.is_file() else {}


def _read_json(path: Path) -> dict:
    from learn2diss.io import read_json

    return read_json(path) if path.is_file() else {}


def _huggingface_license(directory: Path) -> str | None:
    card = directory / "README.md"
    if not card.is_file():
        return None
    front = re.match(r"---\n(.*?)\n---", card.read_text(encoding="utf-8"), re.DOTALL)
    found = re.search(r"^license:\s*(\S+)", front.group(1), re.MULTILINE) if front else None
    return found.group(1) if found else None


def trace_parent(parent: str, depth: int = 0) -> Lineage:
    """The lineage of a parent as ``learn2diss pretrain`` recorded it (a path, or ``random``)."""
    from learn2diss.upstream.checkpoints import CONFIG_FILE, read_model_config

    lineage = Lineage()
    path = Path(parent)
    if parent == "random":
        lineage.steps.append("random initial weights (`--random-parent`)")
        return lineage
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        config = read_model_config(path)
        extra = _read_yaml(path / CONFIG_FILE).get("extra") or {}
        run = extra.get("run")
        lineage.steps.append(f"`{path}`: a learn2diss checkpoint ({config.parent.kind}, {config.parent.num_layers} "
                             f"layers, {config.parent.embed_dim}-d)" + (f", exported from the run `{run}` at step "
                                                                        f"{extra.get('step')}" if run else ""))
        init = _read_yaml(Path(run) / "init" / CONFIG_FILE).get("extra") or {} if run else {}
        if init.get("parent") and depth < 5:
            inner = trace_parent(str(init["parent"]), depth + 1)
            lineage.steps += inner.steps
            lineage.license, lineage.license_source = inner.license, inner.license_source
        return lineage
    if path.is_dir():
        lineage.steps.append(f"`{path}`: a Hugging Face model directory")
        lineage.license = _huggingface_license(path)
        lineage.license_source = f"the `license` of {path / 'README.md'}" if lineage.license else ""
        return lineage
    lineage.steps.append(f"`{path}`: a fairseq / Microsoft checkpoint file")
    try:
        from learn2diss.upstream.checkpoints import read_parent

        kind = read_parent(path)[0].kind
    except Exception:  # noqa: BLE001 - the card only describes; the parent may have moved since training
        kind = None
    if kind in ("hubert", "wav2vec2", "data2vec"):
        lineage.license, lineage.license_source = FAIRSEQ_LICENSE
    return lineage


def find_evaluations(folders: Sequence[Path], weights_hash: str) -> list[tuple[Path, object]]:
    """(results file, its rows for these weights) for every CSV under ``folders`` with a ``checkpoint_hash`` column."""
    import pandas as pd

    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.csv")):
            try:
                table = pd.read_csv(path, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
                continue
            if not {"checkpoint_hash", "metric", "value"} <= set(table.columns):
                continue
            rows = table[table["checkpoint_hash"] == weights_hash]
            if len(rows):
                found.append((path, rows))
    return found


def _producer(path: Path, rows) -> str:
    if "eval" in rows.columns:
        return ", ".join(f"`{PRODUCERS.get(e, 'learn2diss eval ' + e)}`" for e in sorted(set(rows["eval"])))
    if "setting" in rows.columns:
        return f"`learn2diss demo` or `learn2diss study` (per-run rows, {path.name})"
    return "(not recorded)"


def _evaluations_section(found: list[tuple[Path, Any]], folders: Sequence[Path], weights_hash: str) -> list[str]:
    lines = ["## Evaluations", ""]
    if not found:
        searched = ", ".join(f"`{f}`" for f in folders) or "no results folder"
        return [*lines, f"No results rows for these weights (hash `{weights_hash}`) were found (searched: {searched}).",
                ""]
    lines.append(f"Every row below was measured on exactly these weights (`checkpoint_hash` {weights_hash}); "
                 "what the number means is the evaluation's (docs/evaluation.md of learn2diss).")
    for path, rows in found:
        measure = [c for c in _MEASURE if c in rows.columns and (rows[c] != "").any()]
        lines += ["", f"`{path}`, written by {_producer(path, rows)}:", "",
                  "| " + " | ".join(measure) + " |", "|" + "---|" * len(measure)]
        for _, row in rows.iterrows():
            cells = [_number(row[c]) if c == "value" else str(row[c]) for c in measure]
            lines.append("| " + " | ".join(cells) + " |")
        provenance = [(c, sorted(set(rows[c]) - {""})) for c in _PROVENANCE if c in rows.columns]
        lines += [""] + [f"- {c}: " + "; ".join(f"`{v}`" for v in values) for c, values in provenance if values]
    return [*lines, ""]


def _number(text: str) -> str:
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _get(tree: dict, dotted: str) -> object:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _training_section(run_dir: Path | None, step: int | None) -> list[str]:
    lines = ["## Training", ""]
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return [*lines, "The pretraining run is not available; only the checkpoint was exported.", ""]
    config = _read_yaml(run_dir / "config.yaml")
    run = _read_json(run_dir / "run.json")
    lines.append(f"- Run: `{run_dir}` (its resolved config: `{run_dir / 'config.yaml'}`).")
    if run.get("manifest"):
        hours = ""
        try:
            from learn2diss.data.manifest import read_manifest

            hours = f", {read_manifest(run['manifest']).samples.sum() / 16000 / 3600:.2f} h"
        except Exception:  # noqa: BLE001 - the manifest may have moved since training
            pass
        lines.append(f"- Data: the manifest `{run['manifest']}` ({run.get('manifest_utterances', '?')} utterances"
                     f"{hours}, fingerprint {run.get('manifest_fingerprint', '?')}).")
    layer = _get(config, "frame_targets.layer")
    frame_done = _read_json(run_dir / "frame_targets" / "done.json")
    utt_done = _read_json(run_dir / "utt_targets" / "done.json")
    lines.append(f"- Frame targets: k-means, K = {frame_done.get('num_clusters', _get(config, 'model.frame.num_targets'))}"
                 f", on {'MFCC features' if layer == 'mfcc' else f'parent layer {layer}'}.")
    lines.append(f"- Utterance encoder h: {_get(config, 'utt_simclr.steps')} SimCLR steps, then "
                 f"Q = {utt_done.get('num_clusters', '?')} utterance clusters (knee point of "
                 f"{utt_done.get('counts', '?')}).")
    steps = _get(config, "joint.steps")
    lines.append(f"- Joint stage: step {step if step is not None else '?'} of {steps}, gradient accumulation "
                 f"{_get(config, 'joint.grad_accum')}, at most {_get(config, 'data.max_batch_seconds')} s of audio "
                 f"per batch and process, MI weight λ = {_get(config, 'joint.club.weight')}, seed "
                 f"{_get(config, 'train.seed')}.")
    overrides = _read_json(run_dir / "study_cell.json").get("overrides")
    if overrides:
        lines.append("- Overrides of the run: " + " ".join(f"`{o}`" for o in overrides) + ".")
    return [*lines, ""]


def model_card(model, fmt: str, name: str, weights_hash: str, run_dir: Path | None, step: int | None,
               results: Sequence[Path], license: str | None) -> str:
    """The README.md of the frame encoder of ``model`` exported in ``fmt`` (``huggingface`` or ``fairseq``)."""
    parent, frame = model.config.parent, model.config.frame
    init = _read_yaml(run_dir / "init" / "config.yaml").get("extra") if run_dir else None
    lineage = trace_parent(str(init["parent"])) if init and init.get("parent") else Lineage(["not recorded"])
    if license is None:
        if lineage.license is None:
            raise UsageError("the parent's licence is not known (" + "; ".join(lineage.steps) + "); give --license "
                             "(the terms of the parent's publisher, or yours for weights trained from scratch)")
        license = lineage.license
    license_line = f"{license} (--license)" if lineage.license != license else f"{license} ({lineage.license_source})"
    kind_class = HF_CLASSES[parent.kind]
    n, m, layers = frame.num_frozen_layers, model.config.num_trainable_layers, parent.num_layers
    frozen = f"1-{n}" if n else "none"
    count = sum(t.numel() for t in frame_path(model)[1].values())
    lines = ["---", f"license: {license}", *(["library_name: transformers"] if fmt == "huggingface" else []),
             "tags:", "- speech", "- self-supervised-learning", "- learn2diss", f"- {parent.kind}", "---", "",
             f"# {name}", "",
             f"The frame-level encoder of a Learn2Diss model (Krishna & Ganapathy, 2024), saved as a plain "
             f"{'`' + kind_class + '`' if fmt == 'huggingface' else parent.kind + ' checkpoint in the fairseq layout'}: "
             "f (the parent's convolutional encoder, feature projection, positional convolution and first N "
             "transformer layers, frozen) followed by g (the other M layers, trained by Learn2Diss to predict "
             "pseudo-phone targets while minimising their mutual information with an utterance-level encoder). "
             "f then g is the parent's architecture, so every tool that loads the parent loads this.", "",
             "## Model", "",
             "| | |", "|---|---|",
             f"| architecture | {parent.kind}: {layers} transformer layers, {parent.embed_dim}-d, {parent.num_heads} "
             f"heads, feed-forward {parent.ffn_dim}; {count / 1e6:.2f} M parameters |",
             f"| layers | 1-{layers}: {frozen} from the parent, frozen (f, N = {n}); {n + 1}-{layers} trained by "
             f"Learn2Diss (g, M = {m}) |",
             f"| frames | one per {parent.stride} samples ({parent.stride / 16:.0f} ms) of 16 kHz mono audio |",
             f"| input | the raw waveform{', normalised per utterance to zero mean and unit variance' if parent.normalize_waveform else ', not normalised'} "
             f"({'`do_normalize: true`' if parent.normalize_waveform else '`do_normalize: false`'} in "
             "preprocessor_config.json) |",
             f"| weights | learn2diss checkpoint hash `{weights_hash}` (the `checkpoint_hash` of results rows) |",
             f"| licence | {license_line} |", "",
             "## Parent", "", *[f"{'- ' if len(lineage.steps) > 1 else ''}{s}" for s in lineage.steps], "",
             *_training_section(run_dir, step),
             *_evaluations_section(find_evaluations(results, weights_hash), results, weights_hash),
             "## Intended use", "",
             "Frame-level features for content tasks: phone recognition, ASR, keyword spotting, intent "
             "classification, slot filling (a weighted sum of the layers, SUPERB-style) and ZeroSpeech ABX (the "
             "last layer). The utterance-level encoder, which carries speaker and channel information, is not in "
             "this file: it needs learn2diss (`learn2diss export RUN --out CKPT`, the s3prl entry "
             "`learn2diss_local`).", "",
             "## Not included", "",
             "Parts of the Learn2Diss model with no place in a parent checkpoint: h (the ECAPA-TDNN utterance "
             "encoder), W_g (the frame encoder's projection to its K targets), W_h (the utterance encoder's "
             "projection to its Q targets), the projections A^l of the intermediate ECAPA-TDNN layers (eq. 9) "
             "and the training-only CLUB network q_φ. g's mask embedding is included "
             f"({'`masked_spec_embed`' if fmt == 'huggingface' else '`mask_emb`'}).", "",
             "## Loading", "", *_loading(fmt, parent.kind, name), "",
             "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _loading(fmt: str, kind: str, name: str) -> list[str]:
    entry = S3PRL_ENTRIES[kind]
    if fmt == "huggingface":
        return ["```python", f"# {name}: this folder, or the hub repository it is uploaded to",
                "from transformers import AutoFeatureExtractor, AutoModel", "",
                f'model = AutoModel.from_pretrained("{name}")', f'extractor = AutoFeatureExtractor.from_pretrained("{name}")',
                'inputs = extractor(wav, sampling_rate=16000, return_tensors="pt")  # wav: 16 kHz mono float array',
                "hidden_states = model(**inputs, output_hidden_states=True).hidden_states  # input of layer 1, then "
                "every layer", "```"]
    return ["```python", "from s3prl.nn import S3PRLUpstream", "",
            f'upstream = S3PRLUpstream("{entry}", path_or_url="{name}/model.pt").eval()',
            "hidden_states, lengths = upstream(wavs, wavs_len)  # wavs: (batch, samples) 16 kHz", "```", "",
            f"In ESPnet: `frontend: s3prl` with `upstream: {entry}` and `path_or_url` the `model.pt` above."]
