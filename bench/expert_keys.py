"""Per-key forward time of the s3prl expert: a frame key and an utterance key, eager (both encoders) vs lazy.

s3prl reads one key of the expert's output. "eager" is what the expert did before it computed keys
lazily: f, g and h on every forward (``Learn2Diss.forward``), then one key. "lazy" is today's
``UpstreamExpert``: f, then only the encoder of the key that is read (g for ``hidden_states``, h
for ``utt_hidden_states``). Random weights of a paper config. The lazy values are checked to equal
the eager ones.

Timing on a shared machine: eager and lazy run as interleaved pairs (the order alternates from pair
to pair) so that a burst of other load hits both; each pair gives one ratio lazy/eager, and the
table has the median ratio with the 10-90 % range of the pair ratios and a 95 % bootstrap interval
of the median. A ratio whose interval contains 1.0 is "not resolved". ``--clock process`` times
the process's CPU time instead of the wall clock (steadier when other jobs take the cores).

    python bench/expert_keys.py                       # L2D-W12 on CPU, 2 x 4 s
    python bench/expert_keys.py --models w12,h6 --batch 4 --seconds 10 --repeats 40 --clock process
"""

from __future__ import annotations

import argparse
import random
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


def _time(fn, clock) -> float:
    start = clock()
    fn()
    return clock() - start


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ratio_summary(ratios: list[float], seed: int = 0) -> tuple[float, float, float, float, float]:
    """Median of the pair ratios, their 10 % and 90 % percentiles, and a 95 % bootstrap interval of the median."""
    generator = random.Random(seed)
    medians = sorted(statistics.median(generator.choices(ratios, k=len(ratios))) for _ in range(2000))
    return (statistics.median(ratios), _percentile(ratios, 0.1), _percentile(ratios, 0.9),
            _percentile(medians, 0.025), _percentile(medians, 0.975))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="w12", help="comma list of w12, h12, w6, h6")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=20, help="interleaved eager/lazy pairs per key")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--clock", choices=("wall", "process"), default="wall")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "process" else time.perf_counter
    generator = torch.Generator().manual_seed(0)
    wavs = [torch.randn(int(args.seconds * 16000 * (1 - 0.1 * i)), generator=generator) for i in range(args.batch)]
    print(f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch} x "
          f"~{args.seconds} s (padded), fp32, inference mode, random weights, {args.clock} clock, "
          f"{args.repeats} interleaved pairs")
    print("| model | key | eager ms (median) | lazy ms (median) | ratio lazy/eager (median of pairs) "
          "| pair ratios 10-90 % | 95 % interval of the median | resolved |")
    print("|---|---|---:|---:|---:|---|---|---|")
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
                for pair in range(args.repeats):
                    for label in ("eager", "lazy") if pair % 2 == 0 else ("lazy", "eager"):
                        times[label].append(_time(runs[label], clock))
            ratios = [lazy / full for lazy, full in zip(times["lazy"], times["eager"], strict=True)]
            median, low, high, ci_low, ci_high = ratio_summary(ratios)
            resolved = "yes" if ci_high < 1.0 or ci_low > 1.0 else "not resolved"
            print(f"| L2D-{name.upper()} | {key} | {1000 * statistics.median(times['eager']):.0f} | "
                  f"{1000 * statistics.median(times['lazy']):.0f} | {median:.3f} | {low:.3f}-{high:.3f} | "
                  f"{ci_low:.3f}-{ci_high:.3f} | {resolved} |")


if __name__ == "__main__":
    main()
