"""The module map is enforced here, not in prose.

Every import in ``headshot/*.py``, ``app.py`` and ``benchmarks/*.py`` is read with ``ast``, in all its
forms (``import headshot.x [as y]``, ``from headshot import x``, ``from headshot.x import y``, ``from .
import x``, ``from .x import y``, imports inside functions, ``importlib.import_module("headshot.x")``):

* a package module imports only the modules above it in ``ORDER``; ``app.py`` and ``benchmarks/`` sit
  below everything (they may import any module) and nothing in the package imports them or ``tests``;
* gradio only in ``ui``, ``spaces`` only in ``pipeline``;
* no torch (nor diffusers, transformers, peft, accelerate) in ``studio``, ``ui``, ``styles``, ``imaging``,
  not even lazily: they orchestrate, draw and describe; the GPU core does the tensors.

The checker works on source text, so the last tests plant back-edges in a copy and watch it fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "headshot"
# The target order (a module may import only modules earlier in the list). Modules not written yet are
# skipped; a module file missing from this list fails test_every_module_is_in_the_map.
ORDER = [
    "config", "errors", "progress", "imaging", "disclosure", "faces", "face_measures", "validation", "styles", "identity", "sessions",
    "credentials",  # Content Credentials (C2PA): config, errors and disclosure below it; studio, api, ui above
    "instantid", "tiny",
    "models", "adapters", "lora", "recipe", "aoti", "zerogpu", "pipeline", "studio", "results", "webfiles", "api",
    "page", "ui", "__main__",
]  # fmt: skip
WEB_LAYER = {"webfiles", "api", "page", "ui"}  # the Gradio app: its file handling, its endpoints, its page
ONLY_IN = {"gradio": WEB_LAYER, "gradio_client": WEB_LAYER, "spaces": {"pipeline"}}
TENSOR_LIBRARIES = {
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "safetensors.torch",
}
NO_TENSORS = {"studio", "results", "styles", "imaging", "progress"} | WEB_LAYER
OUTSIDE = {"app", "benchmarks", "tests"}  # below the package: never imported by it


@dataclass(frozen=True)
class Edge:
    target: str  # the full dotted name imported ("headshot.studio", "torch.nn", "gradio")
    line: int


def _package_of(where: str) -> list[str]:
    """The package a file belongs to, for resolving relative imports ("headshot.ui" -> ["headshot"])."""
    return where.split(".")[:-1]


def _resolve(where: str, level: int, module: str | None) -> str:
    base = _package_of(where)
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports(source: str, where: str) -> list[Edge]:
    """Every module ``source`` imports, anywhere in it, as full dotted names. ``where`` is the dotted name
    of the file itself ("headshot.imaging", "app", "benchmarks.run"), for the relative forms.

    ``from X import name`` yields ``X.name`` as well as ``X``: the name may be a submodule, and the rules
    below look the dotted names up, so an attribute (``from headshot import __version__``) does no harm."""
    edges: list[Edge] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            edges += [Edge(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(where, node.level, node.module) if node.level else node.module or ""
            edges.append(Edge(base, node.lineno))
            edges += [
                Edge(f"{base}.{alias.name}" if base else alias.name, node.lineno) for alias in node.names
            ]
        elif isinstance(node, ast.Call) and node.args and _is_import_call(node.func):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value
                if name.startswith("."):  # import_module(".x", "headshot")
                    level = len(name) - len(name.lstrip("."))
                    package = node.args[1] if len(node.args) > 1 else None
                    anchor = (
                        package.value if isinstance(package, ast.Constant) else ".".join(_package_of(where))
                    )
                    name = _resolve(f"{anchor}.__init__", level, name.lstrip(".") or None)
                edges.append(Edge(name, node.lineno))
    return edges


def _is_import_call(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in {"import_module", "__import__"}


def _in(name: str, families: set[str]) -> str | None:
    """The member of ``families`` that ``name`` is, or is inside of ("torch.nn" is in "torch")."""
    return next((f for f in families if name == f or name.startswith(f + ".")), None)


def violations(source: str, where: str) -> list[str]:
    """What breaks the module map in one file; ``where`` is "headshot.<module>", "app" or "benchmarks.<x>"."""
    parts = where.split(".")
    module = parts[1] if parts[0] == "headshot" else None
    found: list[str] = []
    for edge in imports(source, where):
        top = edge.target.split(".")[0]
        at = f"{where}:{edge.line}"
        if top == "headshot" and module is not None:
            sub = edge.target.split(".")[1] if "." in edge.target else None
            if sub in ORDER and sub != module and sub not in ORDER[: ORDER.index(module)]:
                found.append(f"{at} imports headshot.{sub}, which is not above {module} in the module map")
        if module is not None and top in OUTSIDE:
            found.append(f"{at} imports {top}: the package never imports app.py, benchmarks or tests")
        if where == "app" and top in {"app", "benchmarks", "tests"}:
            found.append(f"{at} imports {top}: app.py imports only the package")
        if parts[0] == "benchmarks" and top == "app":
            found.append(f"{at} imports app: benchmarks start it as a process instead")
        if top in ONLY_IN and module not in ONLY_IN[top] and module is not None:
            found.append(f"{at} imports {top}, which only {'/'.join(sorted(ONLY_IN[top]))}.py may import")
        if module in NO_TENSORS and (family := _in(edge.target, TENSOR_LIBRARIES)):
            found.append(f"{at} imports {family}: {module} must not touch torch, even lazily")
    return found


def _where(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def _files() -> list[Path]:
    return [*sorted(PKG.glob("*.py")), ROOT / "app.py", *sorted((ROOT / "benchmarks").glob("*.py"))]


def test_every_module_is_in_the_map():
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert modules <= set(ORDER), f"add new modules to ORDER: {sorted(modules - set(ORDER))}"


def test_the_package_init_imports_nothing_of_its_own():
    """Every module imports ``headshot`` first: its ``__init__`` must stay a leaf."""
    edges = imports((PKG / "__init__.py").read_text(), "headshot.__init__")
    assert not [e for e in edges if e.target.split(".")[0] == "headshot"], edges


@pytest.mark.parametrize("module", ORDER)
def test_module_imports_only_modules_above_it(module):
    path = PKG / f"{module}.py"
    if not path.exists():
        pytest.skip(f"headshot/{module}.py is not written yet")
    found = violations(path.read_text(), f"headshot.{module}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", [ROOT / "app.py", *sorted((ROOT / "benchmarks").glob("*.py"))], ids=_where)
def test_app_and_benchmarks_sit_below_the_package(path):
    found = violations(path.read_text(), _where(path))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", _files(), ids=_where)
def test_every_headshot_import_names_a_real_module(path):
    """``from headshot import x`` names a module or something ``__init__`` defines (``__version__``)."""
    modules = {p.stem for p in PKG.glob("*.py")}
    defined = {
        target.id
        for node in ast.parse((PKG / "__init__.py").read_text()).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    unknown = [
        f"{_where(path)}:{edge.line} imports {edge.target}"
        for edge in imports(path.read_text(), _where(path))
        if (parts := edge.target.split("."))[0] == "headshot"
        and len(parts) > 1
        and parts[1] not in modules | defined  # in "headshot.x.name" only x must be a module
    ]
    assert unknown == []


# --------------------------------------------------------------------------------------
# The checker itself: planted back-edges must fail it
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    [
        "from headshot import studio",
        "from headshot import config, studio",
        "from . import ui",
        "from .studio import generate",
        "import headshot.studio as s",
        "import headshot.studio",
        "from headshot.studio import generate",
        "def later():\n    from . import pipeline\n",
        "import importlib\nimportlib.import_module('headshot.studio')",
        "import importlib\nimportlib.import_module('.ui', 'headshot')",
    ],
)
def test_a_planted_back_edge_fails_the_check(planted, tmp_path):
    original = (PKG / "imaging.py").read_text()
    copy = tmp_path / "imaging.py"
    copy.write_text(original + "\n\n" + planted + "\n")
    found = violations(copy.read_text(), "headshot.imaging")
    planted_lines = [f for f in found if int(f.split(":")[1].split()[0]) > original.count("\n")]
    assert planted_lines and all("not above imaging" in f for f in planted_lines), found


@pytest.mark.parametrize(
    ("module", "planted", "words"),
    [
        ("styles", "def f():\n    import torch\n", "must not touch torch"),
        ("imaging", "import torch.nn.functional as F", "must not touch torch"),
        ("studio", "from diffusers import StableDiffusionXLPipeline", "must not touch torch"),
        ("ui", "from peft import LoraConfig", "must not touch torch"),
        ("studio", "import gradio as gr", "only api/page/ui/webfiles.py may import"),
        ("studio", "import spaces", "only pipeline.py may import"),
        ("ui", "import app", "never imports app.py"),
        ("pipeline", "from benchmarks import run", "never imports app.py"),
        ("studio", "from tests.e2e import free_port", "never imports app.py"),
    ],
)
def test_planted_library_imports_fail_the_check(module, planted, words):
    found = violations(f"def f():\n    pass\n\n{planted}\n", f"headshot.{module}")
    assert found and all(words in f for f in found), found


def test_app_and_benchmarks_may_import_any_module_but_not_each_other_upwards():
    ok = "from headshot import ui, pipeline, studio\nimport headshot.lora\nfrom benchmarks import likeness\n"
    assert violations(ok, "benchmarks.run") == []
    assert violations("from headshot.ui import build_demo\n", "app") == []
    assert violations("import app\n", "benchmarks.run")
    assert violations("from benchmarks import run\n", "app")


def test_allowed_forms_pass():
    source = (
        "from . import __version__, config\nfrom .errors import InvalidRequest\nimport headshot.imaging\n"
        "def f():\n    from headshot.faces import cosine\n    import numpy\n"
    )
    assert violations(source, "headshot.styles") == []
    assert violations("import spaces\nimport torch\n", "headshot.pipeline") == []
    assert violations("import gradio as gr\n", "headshot.ui") == []
