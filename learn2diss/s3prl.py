"""Put the learn2diss upstreams on ``s3prl.hub`` in this process: ``import learn2diss.s3prl``.

s3prl has no plugin mechanism; ``S3PRLUpstream(name)`` (and so ESPnet's s3prl frontend) resolves a name
with ``getattr(s3prl.hub, name)``. Importing this module registers ``learn2diss_local`` and
``learn2diss_{h6,h12,w6,w12}`` there (:func:`learn2diss.upstream.hubconf.register`)::

    import learn2diss.s3prl
    from s3prl.nn import S3PRLUpstream
    upstream = S3PRLUpstream("learn2diss_local", path_or_url="ckpt/l2d_w12")

For a program that cannot be edited (an ESPnet recipe), run it through this module, which registers
the entries and then runs the program as ``python`` would::

    python -m learn2diss.s3prl -m espnet2.bin.asr_train --config conf/train_asr_learn2diss.yaml ...
    python -m learn2diss.s3prl my_script.py ARGS
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

import s3prl.hub

from learn2diss.upstream.hubconf import ENTRIES, register

register(s3prl.hub)

__all__ = ["ENTRIES", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """``-m MODULE ARGS`` or ``SCRIPT ARGS``: run it as ``__main__`` with the entries registered.

    This is the command line of ``python -m learn2diss.s3prl`` (like :mod:`learn2diss.cli`): without a
    program it exits with a usage line and status 1, as ``python -m`` itself would.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "-m" and len(argv) < 2:
        raise SystemExit("usage: python -m learn2diss.s3prl (-m MODULE | SCRIPT) [ARGS...]")
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
