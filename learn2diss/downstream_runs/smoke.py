"""Tiny SUPERB settings (``learn2diss superb run --smoke``): every task trains, evaluates and lands in the results in minutes.

They check the plumbing (data layout, upstream keys, s3prl recipes, evaluation, dev-best checkpoint,
results, submission), not the model: the numbers are not comparable with Table 2. Each task trains
``STEPS[task]`` steps at the learning rate ``LR`` (unless ``--lrs`` is given) with small batches,
evaluates on dev every ``STEPS // EVALS`` steps and keeps one checkpoint; the 2 x 1024 BLSTM heads
of ASR and SF become 2 x 64 (projection 64); data loading stays in the main process; ASR and SF
train without SpecAugment (its frequency masks, up to 50 wide, would hide a small upstream's
whole feature).

s3prl writes ``<dev>-best.ckpt`` only when the dev metric beats its starting value (ASR: WER < 100 %,
SF: slot-type F1 > 0, KS/IC/SID/ER: accuracy > 0). On datasets that a head can learn in that many
steps (``tests/superb_fixtures.py``) every task writes one; where a head learns nothing the grid
scores the last checkpoint and the row says ``last-checkpoint``.

ER runs fold1 only (a submission needs all five folds). User ``--override`` options come after these
and win.
"""

from __future__ import annotations

from learn2diss.downstream_runs.tasks import Task

LR = 1e-2
STEPS = {"pr": 100, "asr": 600, "ks": 100, "ic": 100, "sf": 300, "sid": 100, "asv": 10, "er": 100}
EVALS = 6  # dev evaluations per run (ASV has no dev set: one checkpoint at the end)

_SMALL_RNN = ("project_dim=64", "RNNs.dim=[64,64]")
_TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "pr": ("downstream_expert.corpus.batch_size=4", "downstream_expert.corpus.num_workers=0"),
    "asr": ("downstream_expert.datarc.train_batch_size=8", "downstream_expert.datarc.batch_size=8",
            "downstream_expert.datarc.num_workers=0", "specaug=None",
            *(f"downstream_expert.modelrc.{o}" for o in _SMALL_RNN)),
    "ks": ("downstream_expert.datarc.batch_size=4", "downstream_expert.datarc.num_workers=0"),
    "ic": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.eval_batch_size=4",
           "downstream_expert.datarc.num_workers=0"),
    "sf": ("downstream_expert.corpus.batch_size=4", "downstream_expert.corpus.num_workers=0", "specaug=None",
           *(f"downstream_expert.model.{o}" for o in _SMALL_RNN)),
    "sid": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.num_workers=0"),
    "asv": ("downstream_expert.datarc.train_batch_size=2", "downstream_expert.datarc.num_workers=0"),
    "er": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.eval_batch_size=4",
           "downstream_expert.datarc.num_workers=0"),
}


def smoke_options(task: Task) -> list[str]:
    """s3prl ``-o`` options (without the ``,,`` joins) of the smoke settings of ``task``."""
    steps = STEPS[task.name]
    every = steps if task.dev_split is None else max(1, steps // EVALS)
    runner = [f"runner.total_steps={steps}", f"runner.eval_step={every}", f"runner.save_step={steps}",
              f"runner.log_step={every}", "runner.gradient_accumulate_steps=1", "runner.max_keep=1"]
    return [f"config.{option}" for option in (*runner, *_TASK_OPTIONS[task.name])]
