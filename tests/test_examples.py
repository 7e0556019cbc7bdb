"""Every command example of README.md, docs/*.md and every ``--help`` runs as written against the demo's files.

The slow test builds ``learn2diss demo --quick --work-dir runs/demo --out results/demo`` in a temporary folder (the
paths ``make demo`` writes), then runs each example there in order: README.md, docs/*.md (by name), then each
command's ``--help`` (in the order of ``learn2diss --help``). An example that cannot run on those files carries its
reason (tests/examples.py says how); the fast tests check that every example either runs or says why, and that a
runnable example names only the demo's paths or ones that an earlier example wrote. The same demo output checks that
``eval purity`` and ``eval probes`` with the documented flags give the demo's own numbers, and that the feature
cache is reused when the audio folder moves.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from examples import all_examples

from learn2diss.cli import build_parser

BIN = Path(sys.executable).parent
RUNNABLE = ("learn2diss", "python -m learn2diss", "learn2diss-run-downstream")


def _argv(command: str) -> list[list[str]]:
    """The learn2diss commands of one example (``a; b`` and ``a && b`` are several)."""
    out = []
    for part in command.replace("&&", ";").split(";"):
        words = shlex.split(part)
        if words and words[0] == "learn2diss":
            out.append(words[1:])
    return out


def test_every_example_runs_or_says_why() -> None:
    examples = all_examples()
    assert len(examples) > 60
    for example in examples:
        if not example.skip:
            assert example.command.startswith(RUNNABLE), (
                f"{example.source}: `{example.command}` is not a learn2diss command: mark it `# not run: REASON`")
            assert "..." not in example.command and "…" not in example.command, example.source


def test_every_learn2diss_example_parses() -> None:
    """Run or not, each learn2diss command of an example is a valid command line (options, choices, required)."""
    parser = build_parser()
    for example in all_examples():
        for argv in _argv(example.command):
            if argv in (["--help"], ["--version"]) or argv[-1:] == ["--help"]:
                continue
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{example.source}: `learn2diss {' '.join(argv)}` does not parse")


def test_the_missing_entry_checkpoint_hint_is_a_command_that_parses(tmp_path, monkeypatch) -> None:
    from learn2diss.upstream import hubconf

    monkeypatch.setenv("LEARN2DISS_CHECKPOINTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        hubconf.learn2diss_w12()
    commands = [line.strip() for line in str(error.value).splitlines() if line.strip().startswith("learn2diss ")]
    assert len(commands) == 3
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A folder holding the quick demo's output at the full demo's paths (runs/demo, results/demo)."""
    work = tmp_path_factory.mktemp("examples")
    start = time.perf_counter()
    run(work, "learn2diss demo --quick --work-dir runs/demo --out results/demo", timeout=3600)
    print(f"\nlearn2diss demo --quick: {time.perf_counter() - start:.0f} s")
    # the speech recognition stage, on the same work folder (the other stages are skipped)
    done = run(work, "learn2diss demo --quick --asr --work-dir runs/demo --out results/demo", timeout=3600)
    assert "done before" in done.stdout and "Speech recognition: CTC fine-tuning" in done.stdout
    summary = (work / "results" / "demo" / "summary.md").read_text()
    assert "| parent (HuBERT it. 1) (demo-parent) |" in summary, summary[-2000:]
    return work


def run(cwd: Path, command: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "LEARN2DISS_CACHE": str(cwd / "cache")}
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_every_example_runs_against_the_quick_demo(demo: Path) -> None:
    examples = all_examples()
    times = []
    for example in examples:
        if example.skip:
            continue
        start = time.perf_counter()
        run(demo, example.command)
        times.append((time.perf_counter() - start, example))
    skipped = [e for e in examples if e.skip]
    print(f"\n{len(times)} examples ran, {len(skipped)} marked not run:")
    for seconds, example in times:
        print(f"  {seconds:6.1f} s  {example.source}: {example.command[:100]}")
    for example in skipped:
        print(f"  not run  {example.source}: {example.command[:80]}  [{example.skip}]")


def _rows(path: Path) -> dict[tuple[str, str], float]:
    with open(path) as handle:
        return {(r["metric"], r["setting"] + "-seed" + r["seed"]): float(r["value"]) for r in csv.DictReader(handle)
                if r["split"] == "test"}


@pytest.mark.slow
def test_eval_purity_and_probes_give_the_demos_numbers(demo: Path, tmp_path: Path) -> None:
    """The commands with the flags docs/demo.md gives for the quick demo (K = 20, 2,000 probe frames) reproduce
    rows.csv of lambda-default seed 0; then, with the corpus moved, the cached features are used as they are."""
    demo_rows = _rows(demo / "results" / "demo" / "rows.csv")
    corpus = demo / "runs" / "demo" / "corpus"
    common = (f"--checkpoint runs/demo/checkpoints/lambda-default-seed0 --audio {{audio}} "
              f"--alignments {corpus}/alignments/test.tsv --speakers {corpus}/splits/test.tsv --dataset test "
              f"--results {tmp_path}/results --work-dir {tmp_path}/work")
    audio = corpus / "LibriSpeech-style" / "test"
    run(demo, f"learn2diss eval purity {common.format(audio=audio)} --clusters 20")
    run(demo, f"learn2diss eval probes {common.format(audio=audio)} --max-frames 2000")
    ours = {}
    for name in ("purity", "probes"):
        with open(tmp_path / "results" / f"{name}.csv") as handle:
            ours |= {f"{r['eval']}/{r['condition']}/{r['metric']}": float(r["value"]) for r in csv.DictReader(handle)}
    cell = "lambda-default-seed0"
    for metric in ("purity/frame:last/phone_purity", "purity/frame:last/pnmi", "purity/utt:embedding/speaker_purity",
                   "probes/frame/speaker_id_acc", "probes/frame/phone_acc", "probes/utterance/speaker_id_acc",
                   "probes/utterance/phone_acc"):
        assert ours[metric] == pytest.approx(demo_rows[metric, cell], abs=1e-6), metric

    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("*.npy")}
    moved = tmp_path / "moved-audio"
    shutil.copytree(audio, moved)  # another folder, new modification times, the same bytes
    done = run(demo, f"learn2diss eval purity {common.format(audio=moved)} --clusters 20")
    assert "extracting features" not in done.stderr and "recomputing" not in done.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("*.npy")} == cached
