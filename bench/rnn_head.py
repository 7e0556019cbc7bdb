"""Forward + backward time of the RNN part of s3prl's ASR/SF heads (2-layer BLSTM) on the CPU.

The OpenMP settings come from the environment, so run it once per setting, e.g.::

    OMP_NUM_THREADS=1 python bench/rnn_head.py --dims 64
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python bench/rnn_head.py --dims 64
    OMP_NUM_THREADS=2 python bench/rnn_head.py --dims 64,1024 --mkldnn on,off

Prints one markdown row per head size and oneDNN setting (the fastest of ``--repeats``).
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", default="64,1024", help="BLSTM sizes (the smoke head is 64, SUPERB's 1024)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=200, help="frames per utterance (4 s at 50 Hz)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mkldnn", default="on", help="oneDNN on, off or on,off")
    args = parser.parse_args()
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={policy}, "
          f"batch {args.batch} x {args.frames} frames")
    print("| head | oneDNN | fwd+bwd ms (fastest) |\n|---|---|---:|")
    torch.manual_seed(0)
    for dim in (int(d) for d in args.dims.split(",")):
        layers = [torch.nn.LSTM(dim, dim, bidirectional=True, batch_first=True),
                  torch.nn.LSTM(2 * dim, dim, bidirectional=True, batch_first=True)]
        x = torch.randn(args.batch, args.frames, dim, requires_grad=True)
        for setting in args.mkldnn.split(","):
            times = []
            with torch.backends.mkldnn.flags(enabled=setting == "on"):
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    y = x
                    for layer in layers:
                        y, _ = layer(y)
                    y.sum().backward()
                    times.append(time.perf_counter() - start)
            print(f"| 2 x {dim} BLSTM | {setting} | {1000 * min(times):.0f} |", flush=True)


if __name__ == "__main__":
    main()
