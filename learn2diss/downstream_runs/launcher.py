"""``run_downstream.py``: s3prl's legacy SUPERB runner with the learn2diss upstreams registered.

Takes s3prl's own arguments, plus ``--data-root``; registers ``learn2diss_*`` on ``s3prl.hub``,
applies :mod:`learn2diss.downstream_runs.compat` and hands over to ``s3prl.run_downstream.main``.

* ``-d`` may be one of our task names (``pr asr ks ic sf sid asv er``): the packaged task config is
  filled from ``--data-root`` (after a layout check), written to ``EXPDIR/learn2diss_<task>.yaml``
  and passed to s3prl as ``-c`` with its downstream folder as ``-d``; ``-s`` defaults to the task's
  key, so semantic tasks read the frame layers and SID/ASV/ER the utterance layers.
* s3prl's own task names that are one of ours (``-d sv_voxceleb1`` = ``asv``, ``voxceleb1`` = ``sid``,
  ``speech_commands`` = ``ks``, ``fluent_commands`` = ``ic``, ``emotion`` = ``er``) are taken as ours
  when no ``-c`` is given; ``-d ctc`` is PR or SF and the error says so.
* ``num_workers`` of the task config is capped at the CPUs this process may use.
* ``-m evaluate -e EXPDIR/states-N.ckpt`` without ``-t`` evaluates the task's test split
  (``test-clean`` for ASR), read from the task config this launcher wrote into EXPDIR.
* An unknown ``-s`` key of a learn2diss upstream is an error (s3prl would fall back silently).
* A ``-c`` config must be plain YAML: a Python tag (``!!python/...``) or a key given twice is an error naming
  the file (and the line) before s3prl reads it.
* Files are untrusted (:mod:`learn2diss.downstream_runs.compat`): an upstream checkpoint that needs arbitrary
  unpickling (a full pickle load) is refused with one line naming it and the upstream.
* Bad input (a dataset layout, a key, a checkpoint) is one ``error:`` line, exit 2
  (``LEARN2DISS_DEBUG=1`` shows the traceback); ``-h`` prints s3prl's options, then ours.
* ``--local-rank N`` (``torch.distributed.launch``) and ``LOCAL_RANK`` (torchrun) become s3prl's
  ``--local_rank``; without a GPU ``--device`` defaults to ``cpu``.

Example::

    python run_downstream.py -m train -u learn2diss_w12 -d asv -n w12_asv --data-root /data
    python run_downstream.py -m evaluate -e result/downstream/w12_asv/states-200000.ckpt
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path

from learn2diss.downstream_runs.tasks import TASKS, Task
from learn2diss.errors import Learn2DissError
from learn2diss.io import read_yaml, write_yaml
from learn2diss.schema import check_device

# s3prl's -d -> our task, where that is unambiguous (ctc is both PR and SF)
S3PRL_NAMES = {task.downstream: task.name for task in TASKS.values() if task.downstream not in ("ctc", task.name)}


class LauncherError(Learn2DissError, ValueError):
    """A command line that cannot run: the message says what to pass instead."""


def cache_dir() -> Path:
    """Where dataset caches of s3prl recipes go (``$LEARN2DISS_CACHE/s3prl``, default ``~/.cache/learn2diss/s3prl``)."""
    root = os.environ.get("LEARN2DISS_CACHE") or Path.home() / ".cache" / "learn2diss"
    return Path(root) / "s3prl"


def _pre_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-m", "--mode")
    parser.add_argument("-d", "--downstream")
    parser.add_argument("-c", "--config")
    parser.add_argument("-u", "--upstream")
    parser.add_argument("-k", "--upstream_ckpt")
    parser.add_argument("-s", "--upstream_feature_selection")
    parser.add_argument("-n", "--expname")
    parser.add_argument("-p", "--expdir")
    parser.add_argument("-e", "--past_exp")
    parser.add_argument("-t", "--evaluate_split")
    parser.add_argument("-o", "--override")
    parser.add_argument("-a", "--auto_resume", action="store_true")
    parser.add_argument("--device")
    parser.add_argument("--local_rank", "--local-rank", type=int, dest="local_rank")
    parser.add_argument("--data-root", "--data_root", dest="data_root")
    return parser


def _user_config_overrides(override: str | None, config: dict) -> None:
    """Apply the ``config.*`` parts of ``-o`` to our copy (s3prl applies all of ``-o`` again later)."""
    if not override or override.lower() == "none":
        return
    from s3prl.utility.helper import override as s3prl_override

    options = [o for o in override.split(",,") if o.strip().startswith("config.")]
    if options:
        s3prl_override(",,".join(options), Namespace(), config)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cap_workers(config: dict, cpus: int) -> dict:
    """Every ``num_workers`` in ``config`` at most ``cpus`` (in place; returned)."""
    for key, value in config.items():
        if isinstance(value, dict):
            cap_workers(value, cpus)
        elif key == "num_workers" and isinstance(value, int) and value > cpus:
            config[key] = cpus
    return config


def _task_config(task: Task, known: Namespace, expdir: Path) -> Path:
    if not known.data_root:
        raise LauncherError(f"-d {task.name} needs --data-root DIR (the folder holding "
                            f"{task.dataset}/, or that folder itself); see docs/superb.md")
    from learn2diss.downstream_runs.prepare import prepare

    config = task.config()
    _user_config_overrides(known.override, config)
    cap_workers(config, available_cpus())
    prepare(task, known.data_root, expdir / "metadata", config)
    path = expdir / f"learn2diss_{task.name}.yaml"
    expdir.mkdir(parents=True, exist_ok=True)
    write_yaml(path, config)
    return path


def s3prl_arguments(argv: Sequence[str]) -> list[str]:
    """Translate our command line into s3prl's (see the module docstring); may write the task config."""
    known, rest = _pre_parser().parse_known_args(list(argv))
    if known.local_rank is None and os.environ.get("LOCAL_RANK"):
        known.local_rank = int(os.environ["LOCAL_RANK"])
    if known.device is None:
        import torch

        known.device = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(known.device)
    if known.config:  # s3prl reads it with yaml.FullLoader: check it is plain YAML (no Python tag, no key twice)
        read_yaml(known.config, "s3prl config (-c)")
    new_experiment = known.mode == "train" and not known.past_exp
    name = (known.downstream or "").lower()
    if new_experiment and not known.config:
        if name == "ctc":
            raise LauncherError("-d ctc is s3prl's recipe for two tasks: pass -d pr (phoneme recognition) "
                                "or -d sf (slot filling)")
        name = S3PRL_NAMES.get(name, name)
    task = TASKS.get(name)
    upstream_is_ours = (known.upstream or "").startswith("learn2diss_")
    if known.upstream_feature_selection and upstream_is_ours:
        from learn2diss.upstream.expert import check_feature_key

        try:
            check_feature_key(known.upstream_feature_selection)
        except ValueError as err:
            raise LauncherError(str(err)) from None
    if known.mode == "evaluate" and known.past_exp and not known.evaluate_split:
        known.evaluate_split = default_test_split(Path(known.past_exp))
    if new_experiment and task is not None and not known.config:
        expdir = Path(known.expdir or f"result/downstream/{known.expname}")
        known.config = str(_task_config(task, known, expdir))
        known.downstream = task.downstream
        if upstream_is_ours and not known.upstream_feature_selection:
            known.upstream_feature_selection = task.feature_key
    elif new_experiment and known.downstream and not known.config:
        raise LauncherError(f"the s3prl package ships no config for -d {known.downstream}; "
                            f"use one of our tasks ({', '.join(TASKS)}) with --data-root, or pass -c CONFIG")
    elif task is not None:
        known.downstream = task.downstream
    out = list(rest)
    for flag, value in (("-m", known.mode), ("-d", known.downstream), ("-c", known.config), ("-u", known.upstream),
                        ("-k", known.upstream_ckpt),
                        ("-s", known.upstream_feature_selection), ("-n", known.expname), ("-p", known.expdir),
                        ("-e", known.past_exp), ("-t", known.evaluate_split), ("-o", known.override),
                        ("--device", known.device),
                        ("--local_rank", known.local_rank)):
        if value is not None:
            out += [flag, str(value)]
    if known.auto_resume:
        out.append("-a")
    return out


def default_test_split(checkpoint: Path) -> str | None:
    """The test split of the task whose config we wrote beside ``checkpoint`` (None: s3prl's default ``test``)."""
    expdir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for task in TASKS.values():
        if (expdir / f"learn2diss_{task.name}.yaml").exists() and task.test_split != "test":
            return task.test_split
    return None


def our_help() -> str:
    """Help for what ``run_downstream.py`` adds to s3prl's arguments."""
    parser = argparse.ArgumentParser(prog="run_downstream.py", add_help=False, usage=argparse.SUPPRESS,
                                     description="learn2diss additions to the options above (docs/superb.md):")
    parser.add_argument("--data-root", metavar="DIR", help="folder holding the datasets in their published layouts; "
                        "with -d TASK the packaged task config is filled from it")
    parser.add_argument("-d", metavar="TASK", help=f"also one of our tasks: {', '.join(TASKS)} (s3prl's names "
                        f"{', '.join(S3PRL_NAMES)} are mapped to ours; -d ctc is pr or sf)")
    parser.add_argument("-u", metavar="UPSTREAM", help="learn2diss_local -k CKPT_DIR, learn2diss_{h6,h12,w6,w12}")
    parser.add_argument("-s", metavar="KEY", help="default: the task's key (frame layers for pr asr ks ic sf, "
                        "utterance layers for sid asv er); an unknown key is an error")
    parser.add_argument("-t", metavar="SPLIT", help="with -m evaluate: default the task's test split "
                        "(test-clean for asr)")
    return parser.format_help()


def _help_requested(argv: Sequence[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run s3prl's ``run_downstream`` with ``argv`` (default: ``sys.argv[1:]``); bad input is one error line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if _help_requested(argv):
        from s3prl.run_downstream import get_downstream_args

        sys.argv = ["run_downstream.py", "-h"]
        with contextlib.suppress(SystemExit):  # argparse exits after printing s3prl's help
            get_downstream_args()
        print("\n" + our_help())
        return 0
    try:
        return _run(argv)
    except Learn2DissError as err:
        if os.environ.get("LEARN2DISS_DEBUG"):
            raise
        print(f"run_downstream.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if os.environ.get("LEARN2DISS_DEBUG"):
            raise
        print("run_downstream.py: interrupted; continue a training run with -m train -e EXPDIR", file=sys.stderr)
        return 130


def handed_files(argv: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """What each checkpoint of ``argv`` is for, and the upstream's checkpoint: they are named when s3prl's loading
    of them is refused."""
    known, _ = _pre_parser().parse_known_args(list(argv))
    described = {}
    if known.upstream_ckpt:
        described[known.upstream_ckpt] = f"the -k checkpoint of upstream {known.upstream}"
    if known.past_exp:
        past = Path(known.past_exp)
        for state in (sorted(past.glob("states-*.ckpt")) if past.is_dir() else [past]):
            described[str(state)] = "the s3prl experiment checkpoint of -e"
    upstream = f"{known.upstream_ckpt} (the -k checkpoint of upstream {known.upstream})" if known.upstream_ckpt else None
    return described, upstream


def _run(argv: list[str]) -> int:
    arguments = s3prl_arguments(argv)
    from learn2diss.downstream_runs import compat

    compat.install(cache_dir(), *handed_files(argv))
    import s3prl.hub

    from learn2diss.upstream.hubconf import register

    register(s3prl.hub)
    from s3prl.run_downstream import main as s3prl_main

    sys.argv = ["run_downstream.py", *arguments]
    s3prl_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
