"""s3prl entry points: ``learn2diss_{h6,h12,w6,w12}`` (paper Table 1) and ``learn2diss_local``.

s3prl resolves ``-u NAME`` with ``getattr(s3prl.hub, NAME)`` and calls the entry with
``ckpt=<-k>, model_config=<-g>, refresh=<-r>``. ``run_downstream.py`` at the repository root puts
these functions on ``s3prl.hub`` (:func:`register`); nothing in the user's s3prl is edited.

* ``learn2diss_local -k CKPT_DIR``: any of our checkpoint directories.
* ``learn2diss_w12`` (and h6/h12/w6): ``-k CKPT_DIR`` if given, otherwise
  ``$LEARN2DISS_CHECKPOINTS/learn2diss_w12`` (default ``~/.cache/learn2diss/checkpoints``). The
  checkpoint must have the architecture the name promises (parent kind, frozen layers N).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from learn2diss.errors import InputError, MissingInputError
from learn2diss.upstream.checkpoints import CONFIG_FILE, read_model_config
from learn2diss.upstream.expert import UpstreamExpert as _UpstreamExpert

# entry name -> (packaged run config, learn2diss/configs/<name>.yaml; parent kind; frozen transformer layers N)
NAMED_MODELS: dict[str, tuple[str, str, int]] = {
    "learn2diss_h6": ("l2d_h6", "hubert", 6),
    "learn2diss_h12": ("l2d_h12", "hubert", 0),
    "learn2diss_w6": ("l2d_w6", "wavlm", 6),
    "learn2diss_w12": ("l2d_w12", "wavlm", 0),
}


# the base checkpoint each parent kind is pretrained from, under the name it is published with
PARENT_FILES = {"hubert": "hubert_base_ls960.pt", "wavlm": "WavLM-Base.pt"}


def default_checkpoint_dir(name: str) -> Path:
    """Where a named entry looks when ``-k`` is not given."""
    root = os.environ.get("LEARN2DISS_CHECKPOINTS") or Path.home() / ".cache" / "learn2diss" / "checkpoints"
    return Path(root) / name


def _named(name: str, ckpt: str | None, **kwargs: Any) -> _UpstreamExpert:
    config_name, kind, frozen = NAMED_MODELS[name]
    directory = Path(ckpt) if ckpt else default_checkpoint_dir(name)
    if not (directory / CONFIG_FILE).is_file():
        where = f"-k {ckpt}" if ckpt else f"the default location {directory}"
        parent = PARENT_FILES[kind]
        raise MissingInputError(
            f"{name}: no learn2diss checkpoint at {where} (no {CONFIG_FILE}). Pretrain one from the {kind} base "
            f"checkpoint {parent} on LibriSpeech 960 h (README.md, docs/pretraining.md):\n"
            "  learn2diss data manifest --root LibriSpeech --subsets train-clean-100,train-clean-360,train-other-500 "
            "--out manifests\n"
            f"  learn2diss pretrain --config {config_name} --parent {parent} --data manifests --out runs/{config_name}\n"
            f"  learn2diss export runs/{config_name} --out {directory}\n"
            f"then pass -k {directory} (or set LEARN2DISS_CHECKPOINTS to the folder holding {name}/)."
        )
    config = read_model_config(directory)
    if (config.parent.kind, config.frame.num_frozen_layers) != (kind, frozen):
        raise InputError(
            f"{name}: {directory} holds a {config.parent.kind} model with N={config.frame.num_frozen_layers} "
            f"frozen layers, but {name} is {kind} with N={frozen} (config {config_name}); "
            "use -u learn2diss_local for other architectures"
        )
    return _UpstreamExpert(ckpt=directory, **kwargs)


def learn2diss_local(ckpt: str, *args: Any, **kwargs: Any) -> _UpstreamExpert:
    """Any learn2diss checkpoint directory: ``-u learn2diss_local -k CKPT_DIR``."""
    return _UpstreamExpert(ckpt, *args, **kwargs)


def learn2diss_h6(ckpt: str | None = None, refresh: bool = False, **kwargs: Any) -> _UpstreamExpert:
    """L2D-H6: HuBERT base parent, N = 6 frozen layers, M = 6 trainable."""
    return _named("learn2diss_h6", ckpt, **kwargs)


def learn2diss_h12(ckpt: str | None = None, refresh: bool = False, **kwargs: Any) -> _UpstreamExpert:
    """L2D-H12: HuBERT base parent, M = 12 trainable layers."""
    return _named("learn2diss_h12", ckpt, **kwargs)


def learn2diss_w6(ckpt: str | None = None, refresh: bool = False, **kwargs: Any) -> _UpstreamExpert:
    """L2D-W6: WavLM base parent, N = 6 frozen layers, M = 6 trainable."""
    return _named("learn2diss_w6", ckpt, **kwargs)


def learn2diss_w12(ckpt: str | None = None, refresh: bool = False, **kwargs: Any) -> _UpstreamExpert:
    """L2D-W12: WavLM base parent, M = 12 trainable layers."""
    return _named("learn2diss_w12", ckpt, **kwargs)


ENTRIES = {
    "learn2diss_local": learn2diss_local,
    "learn2diss_h6": learn2diss_h6,
    "learn2diss_h12": learn2diss_h12,
    "learn2diss_w6": learn2diss_w6,
    "learn2diss_w12": learn2diss_w12,
}


def register(hub: object) -> None:
    """Put every entry on ``hub`` (the ``s3prl.hub`` module) so that ``-u learn2diss_*`` resolves."""
    for name, entry in ENTRIES.items():
        setattr(hub, name, entry)
