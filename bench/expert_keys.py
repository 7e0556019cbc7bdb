"""Per-key forward time of the s3prl expert: a frame key and an utterance key, eager (both encoders) vs lazy.

s3prl reads one key of the expert's output. "eager" is what the expert did before it computed keys
lazily: f, g and h on every forward (``Learn2Diss.forward``), then one key. "lazy" is today's
``UpstreamExpert``: f, then only the encoder of the key that is read (g for ``hidden_states``, h
for ``utt_hidden_states``). Random weights of a paper config; eager and lazy alternate so that
noise on a shared machine hits both; the ratio is taken between the fastest runs, the mean beside it.
The lazy values are checked to equal the eager ones.

    python bench/expert_keys.py                       # L2D-W12 on CPU, 2 x 4 s
    python bench/expert_keys.py --models w12,h6 --batch 4 --seconds 10 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from learn2diss.pretrain.config import load_config
from learn2diss.upstream.checkpoints import save_model
from learn2diss.upstream.expert import UpstreamExpert
from learn2diss.upstream.model import Learn2Diss, UtteranceOutput

KEYS = ("hidden_states", "utt_hidden_states")


def eager(model: Learn2Diss, wavs: list[torch.Tensor], key: str) -> list[torch.Tensor]:
    """The former expert: the whole model, then the key's layers."""
    padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    output = model(padded, torch.tensor([len(w) for w in wavs]))
    if key == "hidden_states":
        return list(output.frame_hidden_states)
    return model.utterance_hidden_states(UtteranceOutput(output.utt_hidden_states, output.utt_embedding, output.utt_embedding))


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="w12", help="comma list of w12, h12, w6, h6")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    wavs = [torch.randn(int(args.seconds * 16000 * (1 - 0.1 * i)), generator=generator) for i in range(args.batch)]
    print(f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch} x "
          f"~{args.seconds} s (padded), fp32, inference mode, random weights")
    print("| model | key | eager ms (fastest) | lazy ms (fastest) | eager ms (mean) | lazy ms (mean) "
          "| ratio lazy/eager (fastest) | ratio (mean) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as folder:
            expert = UpstreamExpert(save_model(Learn2Diss(load_config(f"l2d_{name}").model),
                                                Path(folder) / "ckpt"))
        for key in KEYS:
            runs = {"eager": lambda key=key, expert=expert: eager(expert.model, wavs, key),
                    "lazy": lambda key=key, expert=expert: expert(wavs)[key]}
            times: dict[str, list[float]] = {"eager": [], "lazy": []}
            with torch.inference_mode():
                same = all(torch.equal(a, b) for a, b in zip(runs["eager"](), runs["lazy"](), strict=True))
                if not same:
                    raise AssertionError(f"{name} {key}: lazy values differ from the eager forward")
                for _ in range(args.warmup):
                    runs["eager"](), runs["lazy"]()
                for _ in range(args.repeats):
                    for label, fn in runs.items():
                        times[label].append(_time(fn))
            fast = {label: min(values) for label, values in times.items()}
            mean = {label: statistics.mean(values) for label, values in times.items()}
            print(f"| L2D-{name.upper()} | {key} | {1000 * fast['eager']:.0f} | {1000 * fast['lazy']:.0f} | "
                  f"{1000 * mean['eager']:.0f} | {1000 * mean['lazy']:.0f} | {fast['lazy'] / fast['eager']:.3f} | "
                  f"{mean['lazy'] / mean['eager']:.3f} |")


if __name__ == "__main__":
    main()
