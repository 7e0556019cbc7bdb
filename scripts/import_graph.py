"""The import graph of the learn2diss package, by part, and the layering rules it must keep.

A part is a sub-package (``training``, ``pretrain``, ``eval``, ...) or a top-level module (``io``, ``schema``,
``club``, ...). An edge A -> B means some module of A imports some module of B, at module level or inside a
function (read from the source with ``ast``, nothing is imported). ``tests/test_imports.py`` runs the check.

    python scripts/import_graph.py            # the graph, one line per part, and the rules
    python scripts/import_graph.py --check    # exit status 1 and the offending imports when a rule is broken
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "learn2diss"
WORKFLOWS = {"pretrain", "eval", "downstream_runs", "demo", "study", "cli", "commands", "launch"}
# part -> the parts it must not import
RULES = {
    "training": WORKFLOWS,  # the neutral layer: every workflow uses it, it uses none of them
    "upstream": WORKFLOWS | {"training"},  # the model as s3prl sees it
    "eval": {"pretrain"},  # an evaluation never reaches into pretraining
}


def _part(module: str) -> str | None:
    """``learn2diss.training.loop`` -> ``training``; None outside the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str, root: Path) -> set[tuple[str, int]]:
    """The modules ``path`` (the module ``module``) imports, with their line numbers; ``from package import name``
    counts as an import of ``package.name`` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                is_module = (root / Path(*name.split("."))).is_dir() or (root / f"{Path(*name.split('.'))}.py").is_file()
                found.add((name if is_module else base, node.lineno))
    return found


def import_edges(root: Path) -> dict[str, dict[str, list[str]]]:
    """part -> imported part -> ``file:line`` of each import (imports inside a part are left out)."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    package = root / PACKAGE
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        module = ".".join(relative.parts[:-1] if path.name == "__init__.py" else relative.parts)
        source = _part(module)
        if source is None:
            continue
        for imported, line in sorted(_imports(path, module, root)):
            target = _part(imported)
            if target is not None and target != source:
                edges[source][target].append(f"{path.relative_to(root)}:{line}")
    return edges


def violations(edges: dict[str, dict[str, list[str]]]) -> list[str]:
    """Every import that breaks :data:`RULES`, as ``file:line: part imports part``."""
    return [f"{where}: {source} imports {target}" for source, banned in RULES.items()
            for target in sorted(banned & set(edges.get(source, {}))) for where in edges[source][target]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository root")
    parser.add_argument("--check", action="store_true", help="only check the rules")
    args = parser.parse_args()
    edges = import_edges(args.root)
    if not args.check:
        width = max(map(len, edges))
        for source in sorted(edges):
            print(f"{source:>{width}} -> {', '.join(sorted(edges[source]))}")
        print("\nrules: " + "; ".join(f"{part} imports none of {', '.join(sorted(banned))}"
                                     for part, banned in RULES.items()) + "\n")
    broken = violations(edges)
    print("\n".join(broken) if broken else "every rule holds", file=sys.stderr if broken else sys.stdout)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
