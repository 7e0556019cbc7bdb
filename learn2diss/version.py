"""Which learn2diss made a result: the package version, and the git commit when it runs from a checkout.

``learn2diss --version`` prints both; result records (``rows.csv`` of the demo and the study) keep both, so
a wheel install (no git) still records its version.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from learn2diss import __version__

__all__ = ["__version__", "git_commit", "version_line"]


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` with uncommitted changes), or None for an
    installed package (a wheel in site-packages, even inside another repository's folder)."""
    root = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        if Path(top).resolve() != root:
            return None
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def version_line() -> str:
    """``learn2diss 0.1.0 (git 7a2f62c0a1b2)``, or ``learn2diss 0.1.0`` outside a checkout."""
    commit = git_commit()
    return f"learn2diss {__version__}" + (f" (git {commit})" if commit else "")
