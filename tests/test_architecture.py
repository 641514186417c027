"""The module map is enforced here, not in prose: import order, gradio only in ui, spaces only in pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "headshot"
ORDER = [
    "config", "errors", "imaging", "faces", "validation", "styles", "identity", "instantid", "tiny",
    "models", "adapters", "lora", "recipe", "aoti", "pipeline", "studio", "ui", "__main__",
]


def imports_of(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                if node.module:
                    found.add("headshot." + node.module.split(".")[0])
                else:
                    found.update("headshot." + alias.name for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def test_every_module_is_in_the_map():
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert modules <= set(ORDER), f"add new modules to the map: {modules - set(ORDER)}"


@pytest.mark.parametrize("module", [m for m in ORDER if (PKG / f"{m}.py").exists()])
def test_imports_only_modules_above(module):
    allowed = set(ORDER[: ORDER.index(module)])
    for name in imports_of(PKG / f"{module}.py"):
        top = name.split(".")[0]
        if name.startswith("headshot."):
            target = name.split(".")[1]
            assert target in allowed or target == "__init__" or target == "__version__", (
                f"{module} imports {target}, which is not above it in the module map"
            )
        if top == "gradio" or top == "gradio_client":
            assert module == "ui", f"only ui.py may import gradio ({module} does)"
        if top == "spaces":
            assert module == "pipeline", f"only pipeline.py may import spaces ({module} does)"
