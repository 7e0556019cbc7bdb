import sys

from learn2diss.cli import main

sys.exit(main())
