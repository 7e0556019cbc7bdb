"""The training layer every trained workflow uses, and that uses none of them.

- :mod:`~learn2diss.training.loop`: the loop (:func:`~learn2diss.training.loop.train`, one optimiser step in
  :class:`~learn2diss.training.loop.Trainer`), the :class:`~learn2diss.training.loop.Objective` interface with
  its auxiliary networks, the NaN/inf policy;
- :mod:`~learn2diss.training.config`: the ``train:`` settings and the optimiser with its schedule;
- :mod:`~learn2diss.training.ddp`: ``torchrun`` process groups; :mod:`~learn2diss.training.precision`: autocast;
- :mod:`~learn2diss.training.compile`: ``torch.compile`` of the parts an objective names;
- :mod:`~learn2diss.training.checkpoint`: ``step_N.pt`` files; :mod:`~learn2diss.training.metrics`: the log.

Pretraining (:mod:`learn2diss.pretrain`) and CTC fine-tuning (:mod:`learn2diss.eval.ctc`) plug objectives into it;
``bench/train_step.py`` times its step. It imports nothing from the workflows (``tests/test_imports.py``).
"""
