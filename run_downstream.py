#!/usr/bin/env python
"""s3prl's ``run_downstream.py`` with the learn2diss upstreams: same arguments, plus ``--data-root``.

    python run_downstream.py -m train -u learn2diss_w12 -d asv -n w12_asv --data-root /data
    python run_downstream.py -m evaluate -e result/downstream/w12_asv/states-200000.ckpt

The same as the installed ``learn2diss-run-downstream`` command (``learn2diss/run_downstream.py``); see
learn2diss/downstream_runs/launcher.py and docs/superb.md.
"""

import sys

from learn2diss.run_downstream import main

if __name__ == "__main__":
    sys.exit(main())
