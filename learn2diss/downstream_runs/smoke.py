"""Tiny SUPERB settings (``learn2diss superb run --smoke``): every task trains, evaluates and lands in the results in minutes.

They check the plumbing (data layout, upstream keys, s3prl recipes, evaluation, results, submission),
not the model: the numbers are not comparable with Table 2. Each task trains ``STEPS[task]`` steps
with small batches, evaluates on dev once at the last step and keeps one checkpoint; the 2 x 1024
BLSTM heads of ASR and SF become 2 x 64 (projection 64); data loading stays in the main process.
SF picks its checkpoint by slot-value CER instead of slot-type F1: s3prl saves ``dev-best.ckpt``
only when F1 > 0, which a few steps rarely reach, while CER starts from "infinitely bad". F1 and CER
are both still reported. s3prl's ASR recipe has no such switch: it saves ``dev-clean-best.ckpt`` only
when the dev WER falls below 100 %, i.e. when the head spells at least one word right, which a smoke
run does not reach; the grid then scores the last checkpoint and the row says ``last-checkpoint``.
KS, IC, SID and ER save one when the dev accuracy is above 0, which tiny dev sets with an untrained
upstream do not guarantee either (docs/superb.md has a measured grid).

ER runs fold1 only (a submission needs all five folds). User ``--override`` options come after these
and win.
"""

from __future__ import annotations

from learn2diss.downstream_runs.tasks import Task

STEPS = {"pr": 20, "asr": 20, "ks": 20, "ic": 20, "sf": 20, "sid": 20, "asv": 10, "er": 20}

_SMALL_RNN = ("project_dim=64", "RNNs.dim=[64,64]")
_TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "pr": ("downstream_expert.corpus.batch_size=4", "downstream_expert.corpus.num_workers=0"),
    "asr": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.batch_size=4",
            "downstream_expert.datarc.num_workers=0", *(f"downstream_expert.modelrc.{o}" for o in _SMALL_RNN)),
    "ks": ("downstream_expert.datarc.batch_size=4", "downstream_expert.datarc.num_workers=0"),
    "ic": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.eval_batch_size=4",
           "downstream_expert.datarc.num_workers=0"),
    "sf": ("downstream_expert.corpus.batch_size=4", "downstream_expert.corpus.num_workers=0",
           "downstream_expert.metric_higher_better=False",
           "downstream_expert.metric=['slot_value_cer','slot_type_f1']",
           *(f"downstream_expert.model.{o}" for o in _SMALL_RNN)),
    "sid": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.num_workers=0"),
    "asv": ("downstream_expert.datarc.train_batch_size=2", "downstream_expert.datarc.num_workers=0"),
    "er": ("downstream_expert.datarc.train_batch_size=4", "downstream_expert.datarc.eval_batch_size=4",
           "downstream_expert.datarc.num_workers=0"),
}


def smoke_options(task: Task) -> list[str]:
    """s3prl ``-o`` options (without the ``,,`` joins) of the smoke settings of ``task``."""
    steps = STEPS[task.name]
    runner = [f"runner.total_steps={steps}", f"runner.eval_step={steps}", f"runner.save_step={steps}",
              f"runner.log_step={max(1, steps // 4)}", "runner.gradient_accumulate_steps=1", "runner.max_keep=1"]
    return [f"config.{option}" for option in (*runner, *_TASK_OPTIONS[task.name])]
