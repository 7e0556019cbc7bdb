"""A wheel of the package works without the source checkout: ``pip wheel`` of a copy of the tree, installed
(not editable) into a fresh venv, run from a folder outside the checkout.

The fresh venv reuses the test venv's installed dependencies through a ``.pth`` line naming that venv's
site-packages (a plain path line: the ``.pth`` files there, such as the editable install's finder of
``make install``, are not run), so nothing is downloaded; ``learn2diss`` itself must come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".venv", ".git", "runs", "results", "build", "*.egg-info", "__pycache__",
                                 ".pytest_cache", ".ruff_cache")


def _run(args: list[str], cwd: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin folder, a working folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "wheels"), str(source)], tmp, 600)
    (wheel,) = (tmp / "wheels").glob("learn2diss-*.whl")
    env = tmp / "venv"
    venv.create(env, with_pip=False)
    site = Path(_run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp, 60).strip())
    (site / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps", "--no-index",
          "-q", str(wheel)], tmp, 600)
    work = tmp / "elsewhere"
    work.mkdir()
    return env / "bin", work


def test_the_wheel_ships_the_configs_and_runs_outside_the_checkout(installed):
    bin_dir, work = installed
    where = _run([str(bin_dir / "python"), "-c", "import learn2diss; print(learn2diss.__file__)"], work, 60).strip()
    assert Path(where).is_relative_to(bin_dir.parent) and not Path(where).is_relative_to(ROOT), where
    out = _run([str(bin_dir / "learn2diss"), "params", "--config", "l2d_w12"], work, 300)
    assert out.startswith("l2d_w12: wavlm, N = 0 frozen, M = 12 trainable") and "paper (Table 1): 103 M" in out
    out = _run([str(bin_dir / "python"), "-c", "from learn2diss.pretrain.config import load_config; "
                "print(load_config('l2d_h6').model)"], work, 60)  # a base: chain (l2d_h6 -> l2d_h12 -> l2d_w12)
    assert "kind='hubert'" in out and "num_frozen_layers=6" in out
    grid = Path(where).parent / "configs" / "grids" / "study_club.yaml"
    assert grid.is_file()
    out = _run([str(bin_dir / "python"), "-c", "from learn2diss.eval.ctc.config import load_ctc_config; "
                "from learn2diss.downstream_runs.tasks import TASKS; print(load_ctc_config('ctc_10h')[0], "
                "sorted(TASKS['ks'].config()))"], work, 60)  # configs/ctc and configs/superb ship too
    assert out.split() == ["ctc_10h", "['downstream_expert',", "'optimizer',", "'runner',", "'specaug']"]


@pytest.mark.slow
def test_quick_demo_runs_from_the_wheel(installed):
    bin_dir, work = installed
    out = _run([str(bin_dir / "learn2diss"), "demo", "--quick", "--jobs", "2"], work, 1800)
    assert "# Learn2Diss demo: summary" in out
    assert (work / "results" / "demo-quick" / "summary.md").is_file()


def test_the_wheel_has_the_version_and_run_downstream(installed):
    """--version without git (a wheel), and s3prl's runner as an installed command and as a module."""
    from learn2diss import __version__

    bin_dir, work = installed
    assert _run([str(bin_dir / "learn2diss"), "--version"], work, 60).strip() == f"learn2diss {__version__}"
    for command in ([str(bin_dir / "learn2diss-run-downstream"), "-h"],
                    [str(bin_dir / "python"), "-m", "learn2diss.run_downstream", "-h"]):
        out = _run(command, work, 300)
        assert "--data-root" in out and "-u UPSTREAM" in out, out[-2000:]
