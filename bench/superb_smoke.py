"""One frame-level (KS) and one utterance-level (SID) s3prl run through ``run_downstream.py`` on a device.

The datasets are generated in their published layouts (``tests/superb_fixtures.py``: a sine per keyword and per
speaker); the upstream is ``learn2diss_local`` on a checkpoint with random weights: the paper architecture of
``--config`` (L2D-W12 by default), or the tests' tiny model with ``--tiny``. Each task trains with the
``--smoke`` settings of ``learn2diss superb run`` (``learn2diss/downstream_runs/smoke.py``), then is evaluated
on its test split. Prints a markdown table: task, features, wall seconds of training and of evaluation, the
test metric line; the logs are written under ``--out``. A check that s3prl, our upstream and the heads run
there, not a result.

    python bench/superb_smoke.py --device cuda --out /tmp/superb-smoke
    python bench/superb_smoke.py --device cpu --tiny --out /tmp/superb-smoke
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from superb_fixtures import make_checkpoint, make_speech_commands, make_voxceleb1  # noqa: E402

from learn2diss.downstream_runs.smoke import smoke_options  # noqa: E402
from learn2diss.downstream_runs.tasks import get_task  # noqa: E402


def _checkpoint(out: Path, config: str, tiny: bool) -> Path:
    if tiny:
        return make_checkpoint(out / "checkpoint")
    import torch

    from learn2diss.pretrain.config import load_config
    from learn2diss.upstream.checkpoints import save_model
    from learn2diss.upstream.model import Learn2Diss

    torch.manual_seed(0)
    return save_model(Learn2Diss(load_config(config).model), out / "checkpoint")


def _run(args: list[str], log: Path, device: str) -> tuple[float, str]:
    env = {**os.environ, "LEARN2DISS_CACHE": str(log.parent / "cache"), "LEARN2DISS_S3PRL_JOBS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "run_downstream.py"), *args, "--device", device],
                            cwd=log.parent, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log.write_text(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"run_downstream.py {' '.join(args)} failed ({log}):\n{result.stderr[-3000:]}")
    return wall, result.stdout + result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", default="l2d_w12", help="run config of the random checkpoint")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny checkpoint instead")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = _checkpoint(args.out, args.config, args.tiny)
    data = args.out / "data"
    make_speech_commands(data)
    make_voxceleb1(data / "VoxCeleb1")
    print(f"upstream learn2diss_local -k {checkpoint} ({'tiny' if args.tiny else args.config}, random weights), "
          f"device {args.device}\n")
    print("| task | features | train s | evaluate s | test |")
    print("|---|---|---:|---:|---|")
    for name in ("ks", "sid"):
        task = get_task(name)
        expdir = args.out / "runs" / name
        options = ",,".join(smoke_options(task))
        train, _ = _run(["-m", "train", "-u", "learn2diss_local", "-k", str(checkpoint), "-d", name, "-p", str(expdir),
                         "--data-root", str(data), "-o", options], args.out / f"{name}_train.log", args.device)
        best = expdir / task.best_checkpoint
        ckpt = best if best.is_file() else sorted(expdir.glob("states-*.ckpt"))[-1]
        evaluate, text = _run(["-m", "evaluate", "-e", str(ckpt), "-t", task.test_split],
                              args.out / f"{name}_evaluate.log", args.device)
        line = re.findall(r"^.*test.*acc.*$", text, re.MULTILINE)
        print(f"| {name} | {task.level} | {train:.0f} | {evaluate:.0f} | {line[-1].strip() if line else '?'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
