"""Max absolute difference between our frame hidden states and other libraries reading our exports.

The set-up of ``tests/test_export_formats.py`` (its helpers are reused): tiny random models of every parent
kind and variant exported with ``learn2diss.upstream.checkpoints.export_frame_path`` as a Hugging Face folder and
a fairseq-layout ``model.pt``, read by ``transformers.AutoModel``, s3prl's own entry for the kind, ``S3PRLUpstream``
and our importer; every hidden state (input of layer 1 and the 3 layers), two utterances of 8000 and 5000
samples. Ours always runs the padded batch. "alone": the other library runs each utterance by itself (what the
tests assert, <= 1e-5). "padded": it runs the padded batch too, as its users would (transformers with the
attention mask its exported feature extractor asks for, s3prl's experts with their padding mask): only layer-norm
convolutions without data2vec's stacked positional convolution are padding-invariant there, so the other rows
show how far a padded batch is from each utterance alone in that library (the parents behave the same way).

    python bench/export_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_export_formats as te  # noqa: E402


def padded_transformers(hf, model, ours, frames, audio) -> float:
    wav, lengths = audio
    parent = model.config.parent
    batch = torch.nn.utils.rnn.pad_sequence(
        [F.layer_norm(w[:n], (n,)) if parent.normalize_waveform else w[:n] for w, n in zip(wav, lengths.tolist(),
                                                                                          strict=True)],
        batch_first=True)
    mask = (torch.arange(batch.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():  # HF: an attention mask only for models whose extractor returns one (layer norm)
        hidden = hf(batch, attention_mask=mask if parent.extractor_mode == "layer_norm" else None,
                    output_hidden_states=True).hidden_states
    return max(te.max_diff(hidden, ours, i, frames[i], row=i) for i in range(2))


def padded_hf_entry(model, ours, frames, folder, audio) -> float:
    import s3prl.hub

    wav, lengths = audio
    expert = getattr(s3prl.hub, f"hf_{model.config.parent.kind}_custom")(str(folder / "huggingface")).eval()
    with torch.no_grad():
        hidden = expert([w[:n] for w, n in zip(wav, lengths.tolist(), strict=True)])["hidden_states"]
    return max(te.max_diff(hidden, ours, i, frames[i], row=i) for i in range(2))


def padded_s3prl(model, ours, frames, folder, audio) -> tuple[float, float]:
    import s3prl.hub
    from s3prl.nn import S3PRLUpstream

    wav, lengths = audio
    path = str(folder / "fairseq" / te.FAIRSEQ_FILE)
    entry = te.S3PRL_ENTRY[model.config.parent.kind]
    expert = getattr(s3prl.hub, entry)(ckpt=path).eval()
    upstream = S3PRLUpstream(entry, path_or_url=path).eval()
    with torch.no_grad():
        by_entry = expert([w[:n] for w, n in zip(wav, lengths.tolist(), strict=True)])["hidden_states"]
        by_upstream, _ = upstream(wav, lengths)
    return tuple(max(te.max_diff(hidden, ours, i, frames[i], row=i) for i in range(2))
                 for hidden in (by_entry, by_upstream))


def main() -> None:
    import transformers

    audio = te.padded_batch()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print("| variant | format | loader | max abs diff, alone | max abs diff, padded batch |")
    print("|---|---|---|---:|---:|")
    for variant in te.VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            model, ours, frames = te.export_variant(variant, folder, audio)
            hf = transformers.AutoModel.from_pretrained(folder / "huggingface").eval()
            alone, _ = te.transformers_differences(hf, model, ours, frames, audio)
            padded = padded_transformers(hf, model, ours, frames, audio)
            entry_padded, upstream_padded = padded_s3prl(model, ours, frames, folder, audio)
            entry = te.S3PRL_ENTRY[model.config.parent.kind]
            rows = [
                ("huggingface", "transformers AutoModel", alone, padded),
                ("fairseq", f"s3prl {entry}", te.s3prl_entry_difference(model, ours, frames, folder, audio),
                 entry_padded),
                ("fairseq", "S3PRLUpstream", te.s3prl_upstream_difference(model, ours, frames, folder, audio),
                 upstream_padded),
            ]
            if variant in te.HF_ENTRY_VARIANTS:
                rows.insert(1, ("huggingface", f"s3prl hf_{model.config.parent.kind}_custom",
                                te.s3prl_huggingface_entry_difference(model, ours, frames, folder, audio),
                                padded_hf_entry(model, ours, frames, folder, audio)))
            for fmt in ("huggingface", "fairseq"):
                trip = te.round_trip_difference(model, ours, folder, audio, fmt)
                rows.append((fmt, "learn2diss import_parent", trip, trip))
        for fmt, loader, a, p in rows:
            print(f"| {variant} | {fmt} | {loader} | {a:.1e} | {p:.1e} |")


if __name__ == "__main__":
    main()
