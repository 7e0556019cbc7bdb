"""Inference cost of the Learn2Diss frame path against the parent model alone, measured in one run.

The paper (§5.1): "the inference cost of the proposed models are identical to those of the parent
models". This times the frame hidden states (f + g) of any config against its parent alone
(torchaudio's ``extract_features``; a waveform-normalising parent normalises its input too) on the
same batch, alternating the two so that machine noise hits both, and prints a markdown table with
the ratio (goal: <= 1.05). Random weights. The ratio is taken between the fastest runs (the least
disturbed by other load on a shared machine, as ``timeit`` advises); the ratio of the means is
printed beside it.

    python bench/forward.py                                   # CPU, 4 x 10 s, L2D-W12
    python bench/forward.py --models w12,h12,wav2vec2_0,data2vec_0  # packaged configs l2d_<name>
    python bench/forward.py --models path/to/any_config.yaml
    python bench/forward.py --device cuda --batch 16 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio

from learn2diss.pretrain.config import config_path, load_config
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.parent import build_parent


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, clock=time.perf_counter) -> float:
    _sync(device)
    start = clock()
    fn()
    _sync(device)
    return clock() - start


def config_file(name: str) -> Path:
    """A config file, or ``<name>`` of the packaged config ``l2d_<name>``."""
    return config_path(name if Path(name).suffix in (".yaml", ".yml") else f"l2d_{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="process: CPU time of this process (CPU only; steadier than wall time on a loaded machine)")
    parser.add_argument("--models", default="w12",
                        help="comma list of config files or <name> of packaged configs l2d_<name> (w12, h12, wav2vec2_0, ...)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.clock == "process" and device.type != "cpu":
        parser.error("--clock process measures CPU time: use it with --device cpu")
    clock = time.process_time if args.clock == "process" else time.perf_counter
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    wav = torch.randn(args.batch, int(args.seconds * 16000), generator=torch.Generator().manual_seed(0)).to(device)
    lengths = torch.full((args.batch,), wav.shape[1], dtype=torch.long, device=device)
    audio = args.batch * args.seconds
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
          f"batch {args.batch} x {args.seconds} s, {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, "
          f"{args.clock} clock")
    print("| model | ms/batch (mean ± std) | fastest ms | audio-s/s (fastest) | peak MiB | ratio (fastest) | ratio (mean) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        path = config_file(name)
        config = load_config(path).model
        ours = Learn2Diss(config).to(device).eval()
        parent = build_parent(config.parent).to(device).eval()

        def run_ours(ours: Learn2Diss = ours) -> None:
            ours.frame_hidden_states(ours.extract(wav, lengths))

        def run_parent(parent: torch.nn.Module = parent, normalize: bool = config.parent.normalize_waveform) -> None:
            # equal lengths: no padding (torchaudio WavLM rejects lengths)
            parent.extract_features(F.layer_norm(wav, wav.shape[1:]) if normalize else wav)

        times: dict[str, list[float]] = {"ours": [], "parent": []}
        peaks: dict[str, float] = {}
        with torch.inference_mode(), autocast:
            for _ in range(args.warmup):
                run_ours()
                run_parent()
            for key, fn in (("ours", run_ours), ("parent", run_parent)):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                    fn()
                    peaks[key] = torch.cuda.max_memory_allocated(device) / 2**20
            for _ in range(args.repeats):  # alternate, so that noise on a shared machine hits both
                times["ours"].append(_time(run_ours, device, clock))
                times["parent"].append(_time(run_parent, device, clock))
        fastest = min(times["ours"]) / min(times["parent"])
        mean_ratio = statistics.mean(times["ours"]) / statistics.mean(times["parent"])
        labels = {"ours": f"{path.stem} frame path (N = {config.frame.num_frozen_layers})",
                  "parent": f"{config.parent.kind} parent, {config.parent.num_layers} layers (torchaudio)"}
        for key in ("parent", "ours"):
            mean, std = statistics.mean(times[key]), statistics.stdev(times[key]) if len(times[key]) > 1 else 0.0
            peak = f"{peaks[key]:.0f}" if key in peaks else "-"
            ratios = f"{fastest:.3f} | {mean_ratio:.3f}" if key == "ours" else "1.000 | 1.000"
            print(f"| {labels[key]} | {1000 * mean:.0f} ± {1000 * std:.0f} | {1000 * min(times[key]):.0f} | "
                  f"{audio / min(times[key]):.1f} | {peak} | {ratios} |")


if __name__ == "__main__":
    main()
