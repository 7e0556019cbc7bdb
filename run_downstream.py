#!/usr/bin/env python
"""s3prl's ``run_downstream.py`` with the learn2diss upstreams: same arguments, plus ``--data-root``.

    python run_downstream.py -m train -u learn2diss_w12 -d asv -n w12_asv --data-root /data
    python run_downstream.py -m evaluate -e result/downstream/w12_asv/states-200000.ckpt

See learn2diss/downstream_runs/launcher.py and docs/superb.md.
"""

import os
import sys

# before torch starts OpenMP: waiting threads sleep instead of spinning (RNN heads beside other jobs)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from learn2diss.downstream_runs.launcher import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
