import sys

from learn2diss.cli import console

sys.exit(console())
