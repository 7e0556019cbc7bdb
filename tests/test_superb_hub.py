"""``import learn2diss.s3prl`` registers the upstreams on s3prl.hub: S3PRLUpstream (ESPnet's frontend) loads them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
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


ESPNET_PROGRAM = """
import sys
import torch
import yaml
import learn2diss.s3prl
from espnet2.asr.frontend.s3prl import S3prlFrontend
config = yaml.safe_load(open(sys.argv[1]))
assert config["frontend"] == "s3prl"
frontend = S3prlFrontend(**config["frontend_conf"])  # what ESPnet's ASR task builds from the config
feats, lengths = frontend(torch.randn(2, 16000), torch.tensor([16000, 8000]))
print(tuple(feats.shape), lengths.tolist(), frontend.hop_length, frontend.output_size())
"""


def docs_espnet_config(checkpoint) -> dict:
    """The ESPnet frontend config of docs/superb.md, with its checkpoint path replaced by ``checkpoint``."""
    text = (REPO / "docs" / "superb.md").read_text()
    block = re.search(r"ESPnet frontend config.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert block, "docs/superb.md has no ESPnet frontend config block"
    config = yaml.safe_load(block[1])
    config["frontend_conf"]["frontend_conf"]["path_or_url"] = str(checkpoint)
    return config


def test_espnet_frontend_config_of_the_docs(tmp_path) -> None:
    """ESPnet's S3prlFrontend built from the docs' config, in a process that imported learn2diss.s3prl
    (skipped where espnet is not installed: it is not a dependency; docs/superb.md says how it was run)."""
    pytest.importorskip("espnet2.asr.frontend.s3prl")
    checkpoint = make_checkpoint(tmp_path / "tiny")
    config = docs_espnet_config(checkpoint)
    assert config["frontend_conf"]["frontend_conf"]["upstream"] == "learn2diss_local"
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(config))
    result = _run(["-c", ESPNET_PROGRAM, str(tmp_path / "asr.yaml")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    frames = 16000 // STRIDE
    assert result.stdout.strip().splitlines()[-1] == f"(2, {frames}, 32) [{frames}, {8000 // STRIDE}] {STRIDE} 32"
