"""The package's layering, read from the source with ``ast`` (``scripts/import_graph.py``): the training layer imports
no workflow, the model no workflow and no training, and no evaluation imports pretraining."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layers():
    graph = _script()
    edges = graph.import_edges(ROOT)
    assert graph.violations(edges) == []
    assert {"pretrain", "eval"} <= {source for source, targets in edges.items() if "training" in targets}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "every rule holds" in result.stdout, result.stderr


def test_a_broken_rule_is_named_with_its_file_and_line(tmp_path):
    graph = _script()
    package = tmp_path / "learn2diss"
    for folder, text in {"training": "def f():\n    from learn2diss.pretrain import stages\n",
                         "eval": "from learn2diss import pretrain\n", "pretrain": ""}.items():
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text(text)
    (package / "pretrain" / "stages.py").write_text("")
    assert graph.violations(graph.import_edges(tmp_path)) == [
        "learn2diss/training/__init__.py:2: training imports pretrain",
        "learn2diss/eval/__init__.py:1: eval imports pretrain",
    ]
