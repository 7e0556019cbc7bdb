"""s3prl's ``run_downstream.py`` with the learn2diss upstreams, as an installed command: same arguments, plus
``--data-root``.

Installed as ``learn2diss-run-downstream`` (and runnable as ``python -m learn2diss.run_downstream``), so a
wheel install has it without the repository's ``run_downstream.py``, which runs the same function.
:mod:`learn2diss.downstream_runs.launcher` says what it adds to s3prl's script; docs/superb.md shows it in use.

Examples::

    learn2diss-run-downstream -m train -u learn2diss_w12 -k ckpt/l2d_w12 -d asv -n w12_asv --data-root /data
    learn2diss-run-downstream -m evaluate -e result/downstream/w12_asv/states-200000.ckpt
"""

import os
import sys


def main() -> int:
    """Hand the command line to :func:`learn2diss.downstream_runs.launcher.main`."""
    # before torch starts OpenMP: waiting threads sleep instead of spinning (RNN heads beside other jobs)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from learn2diss.downstream_runs.launcher import main as launch

    return launch()


if __name__ == "__main__":
    sys.exit(main())
