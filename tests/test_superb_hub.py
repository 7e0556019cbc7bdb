"""``import learn2diss.s3prl`` registers the upstreams on s3prl.hub: S3PRLUpstream (ESPnet's frontend) loads them."""

from __future__ import annotations

import subprocess
import sys

from superb_fixtures import REPO, STRIDE, make_checkpoint

PROGRAM = """
import sys
import torch
{register}
from s3prl.nn import S3PRLUpstream
assert "learn2diss_local" in S3PRLUpstream.available_names()  # what ESPnet's S3prlFrontend asserts
upstream = S3PRLUpstream("learn2diss_local", path_or_url=sys.argv[1])
hidden, lengths = upstream(torch.randn(2, 16000), torch.tensor([16000, 8000]))
print(len(hidden), tuple(hidden[0].shape), lengths[0].tolist(), upstream.downsample_rates[0])
"""


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_s3prl_upstream_loads_learn2diss_local_after_import(tmp_path) -> None:
    checkpoint = make_checkpoint(tmp_path / "tiny")
    result = _run(["-c", PROGRAM.format(register="import learn2diss.s3prl"), str(checkpoint)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"4 (2, {16000 // STRIDE}, 32) [{16000 // STRIDE}, " \
        f"{8000 // STRIDE}] {STRIDE}"


def test_module_runner_registers_before_running_a_program(tmp_path) -> None:
    checkpoint = make_checkpoint(tmp_path / "tiny")
    script = tmp_path / "program.py"
    script.write_text(PROGRAM.format(register=""))
    result = _run(["-m", "learn2diss.s3prl", str(script), str(checkpoint)], REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("4 (2, ")
