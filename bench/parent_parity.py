"""Max absolute difference between imported parents and the reference code, per variant and format.

The set-up of ``tests/test_parents.py`` (its helpers are reused): tiny random models of each parent
variant, written in the original layout from s3prl's copies of the original model classes and as
``save_pretrained`` Hugging Face directories, imported with ``import_parent``; all frame hidden
states, N = 0 and N = 2, two utterances. Prints a markdown table (the tests assert <= 1e-4).

    python bench/parent_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_parents as tp  # noqa: E402


def original_diff(variant: str, directory: Path, waveforms: torch.Tensor) -> float:
    ref, _ = tp.write_original(variant, directory / "parent.pt")
    diff = 0.0
    for frozen in (0, 2):
        model = tp._ours(directory / "parent.pt", frozen)
        for wav, length in zip(waveforms, (4000, 3100), strict=True):
            with torch.no_grad():
                ours = [h[0] for h in model(wav[None, :length]).frame_hidden_states]
            expected = tp.reference_hidden_states(ref, wav[:length], tp.VARIANTS[variant][3])
            diff = max(diff, tp._max_diff(ours, expected))
    return diff


def huggingface_diff(variant: str, directory: Path, waveforms: torch.Tensor) -> float:
    hf = tp.hf_model(variant)
    hf.save_pretrained(directory / "hf")
    reference_input = F.layer_norm(waveforms, waveforms.shape[1:]) if tp.VARIANTS[variant][3] else waveforms
    with torch.no_grad():
        expected = hf(reference_input, output_hidden_states=True).hidden_states
    diff = 0.0
    for frozen in (0, 2):
        with torch.no_grad():
            ours = tp._ours(directory / "hf", frozen)(waveforms).frame_hidden_states
        diff = max(diff, *(tp._max_diff([h[i] for h in ours], [h[i] for h in expected]) for i in range(2)))
    return diff


def main() -> None:
    waveforms = 0.1 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(1)) + 0.02  # a recording's level
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| variant | original layout (s3prl reference classes) | Hugging Face (transformers) |")
    print("|---|---:|---:|")
    for variant in tp.VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            original = original_diff(variant, Path(tmp), waveforms)
            huggingface = huggingface_diff(variant, Path(tmp), waveforms)
        print(f"| {variant} | {original:.1e} | {huggingface:.1e} |")


if __name__ == "__main__":
    main()
