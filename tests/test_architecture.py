"""The module map is enforced here, not in prose.

The package has five layers, bottom to top: the basics (top-level modules), ``faces/``, ``gpu/``, the product
flows (top-level again) and ``web/``. Every import in ``headshot/**/*.py``, ``app.py`` and ``benchmarks/*.py``
is read with ``ast``, in all its forms (``import headshot.x [as y]``, ``from headshot.gpu import x``, ``from
headshot.x import y``, ``from . import x``, ``from .x import y``, imports inside functions,
``importlib.import_module("headshot.x")``):

* a module imports only modules of a lower layer and those of its own layer listed before it (``LAYERS``);
  an import that runs up the layers fails, as does a layer folder's ``__init__`` that imports anything;
* a module takes only public names from another: ``from x import _y`` and ``x._y`` fail;
* the web layer reaches the GPU layer only through the flows (no ``headshot.gpu`` import in ``web/``);
* ``app.py`` and ``benchmarks/`` sit below everything (they may import any module) and nothing in the
  package imports them or ``tests``;
* gradio only in ``web/``, ``spaces`` only in ``gpu/pipeline.py``;
* no torch (nor diffusers, transformers, peft, accelerate) in the flows, ``web/``, ``styles``, ``imaging``,
  not even lazily: they orchestrate, draw and describe; the GPU core does the tensors;
* a function over 80 lines says why at its top; no module passes 900 lines (the GPU entry points 500).

The checker works on source text, so the last tests plant upward and private imports and watch it fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "headshot"
# The layers, bottom to top, each with its modules in order. A module imports only modules of a lower layer
# and the modules of its own layer listed before it. The basics and the product flows sit at the top of the
# package; the other layers are folders (headshot/faces, headshot/gpu, headshot/web).
LAYERS = {
    "basics": ["config", "errors", "progress", "imaging", "disclosure", "screening", "styles", "sessions", "credentials"],
    "faces": ["faces.pack", "faces.analyzer", "faces.measures", "faces.rules", "faces.validation", "faces.identity"],
    "gpu": [
        "gpu.instantid", "gpu.tiny", "gpu.models", "gpu.adapters", "gpu.lora_data", "gpu.lora", "gpu.recipe",
        "gpu.aoti", "gpu.zerogpu", "gpu.sizing", "gpu.pipeline",
    ],
    "flows": ["paused", "studio", "results", "__main__"],
    "web": ["web.files", "web.endpoints", "web.cards", "web.callbacks", "web.layout", "web.ui"],
}  # fmt: skip
ORDER = [module for modules in LAYERS.values() for module in modules]
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}
RANK = {layer: i for i, layer in enumerate(LAYERS)}
FOLDERS = {"faces", "gpu", "web"}  # the layers that are folders; their __init__ holds only a docstring
WEB_LAYER = set(LAYERS["web"])  # the Gradio app: its file handling, its endpoints, its page
ONLY_IN = {"gradio": WEB_LAYER, "gradio_client": WEB_LAYER, "spaces": {"gpu.pipeline"}}
TENSOR_LIBRARIES = {
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "safetensors.torch",
}
NO_TENSORS = {"paused", "studio", "results", "screening", "styles", "imaging", "progress"} | WEB_LAYER
OUTSIDE = {"app", "benchmarks", "tests"}  # below the package: never imported by it
SKIPS = {("web", "gpu")}  # the web layer reaches the GPU only through the flows (studio, paused, results)
LONG_FUNCTION = 80  # lines; a longer function says why at its top ("Long because ...")
LONG_MODULE = 900  # lines
ENTRY_POINTS_MAX = 500  # lines of gpu/pipeline.py, the GPU entry points


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


def _module_of(target: str) -> str | None:
    """The package module a dotted import target names or lies in ("headshot.gpu.models.Models" ->
    "gpu.models"); None for the package itself, a layer folder's ``__init__`` or an attribute of it."""
    parts = target.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in ORDER:
            return ".".join(parts[:n])
    return None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(source: str, where: str) -> list[str]:
    """Private names (``_x``) this file takes from another package module: imported by name, or read as an
    attribute of a module it imported (``models._cache``)."""
    tree = ast.parse(source)
    module = ".".join(where.split(".")[1:]) if where.startswith("headshot.") else where
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> package module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(where, node.level, node.module) if node.level else node.module or ""
            if base.split(".")[0] != "headshot":
                continue
            for alias in node.names:
                target = _module_of(f"{base}.{alias.name}")
                if target is not None and target != _module_of(base):  # a module imported by name
                    bound[alias.asname or alias.name] = target
                elif _is_private(alias.name) and _module_of(base) not in {None, module}:
                    found.append(f"{where}:{node.lineno} imports the private name {alias.name} from {base}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "headshot" and alias.asname and _module_of(alias.name):
                    bound[alias.asname] = _module_of(alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and bound[node.value.id] != module
            and _is_private(node.attr)
        ):
            found.append(f"{where}:{node.lineno} reads the private name {node.value.id}.{node.attr}")
    return found


def violations(source: str, where: str) -> list[str]:
    """What breaks the module map in one file; ``where`` is "headshot.<module>" (dotted inside a layer
    folder: "headshot.gpu.models"), "headshot.<folder>.__init__", "app" or "benchmarks.<x>"."""
    parts = where.split(".")
    module = ".".join(parts[1:]) if parts[0] == "headshot" else None
    package_init = module is not None and module.endswith("__init__")
    found: list[str] = []
    for edge in imports(source, where):
        top = edge.target.split(".")[0]
        at = f"{where}:{edge.line}"
        if top == "headshot" and module is not None:
            target = _module_of(edge.target)
            if package_init and target is not None:
                found.append(f"{at} imports headshot.{target}: a package __init__ holds only its docstring")
            elif target is not None and target != module and module in LAYER_OF:
                mine, theirs = LAYER_OF[module], LAYER_OF[target]
                if RANK[theirs] > RANK[mine]:
                    found.append(
                        f"{at} imports headshot.{target} from the {theirs} layer: an import that runs up the "
                        f"layers ({module} is in {mine}, below {theirs})"
                    )
                elif theirs == mine and ORDER.index(target) > ORDER.index(module):
                    found.append(
                        f"{at} imports headshot.{target}, which is not above {module} in the module map"
                    )
                elif (mine, theirs) in SKIPS:
                    found.append(
                        f"{at} imports headshot.{target}: the {mine} layer reaches {theirs} only through the flows"
                    )
        if module is not None and top in OUTSIDE:
            found.append(f"{at} imports {top}: the package never imports app.py, benchmarks or tests")
        if where == "app" and top in {"app", "benchmarks", "tests"}:
            found.append(f"{at} imports {top}: app.py imports only the package")
        if parts[0] == "benchmarks" and top == "app":
            found.append(f"{at} imports app: benchmarks start it as a process instead")
        if top in ONLY_IN and module not in ONLY_IN[top] and module is not None:
            found.append(f"{at} imports {top}, which only {'/'.join(sorted(ONLY_IN[top]))} may import")
        if module in NO_TENSORS and (family := _in(edge.target, TENSOR_LIBRARIES)):
            found.append(f"{at} imports {family}: {module} must not touch torch, even lazily")
    if parts[0] == "headshot":
        found += private_uses(source, where)
    return found


def _where(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def _files() -> list[Path]:
    return [*sorted(PKG.rglob("*.py")), ROOT / "app.py", *sorted((ROOT / "benchmarks").glob("*.py"))]


def _package_modules() -> set[str]:
    return {".".join(p.relative_to(PKG).with_suffix("").parts) for p in PKG.rglob("*.py")} - {
        "__init__",
        *(f"{folder}.__init__" for folder in FOLDERS),
    }


def test_every_module_is_in_the_map_and_every_layer_is_seen_in_the_tree():
    modules = _package_modules()
    assert modules == set(ORDER), (
        f"add new modules to LAYERS: {sorted(modules - set(ORDER))}; missing: {sorted(set(ORDER) - modules)}"
    )
    for module, layer in LAYER_OF.items():
        folder = module.split(".")[0] if "." in module else None
        assert folder == (layer if layer in FOLDERS else None), f"{module} belongs in headshot/{layer}/"
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == FOLDERS


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_each_layer_folder_says_what_it_holds_and_may_import(folder):
    source = (PKG / folder / "__init__.py").read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    assert len(doc.splitlines()) >= 3, f"headshot/{folder}/__init__.py: say what the layer holds"
    assert "may import" in doc, f"headshot/{folder}/__init__.py: say what the layer may import"
    assert [type(node) for node in tree.body] == [ast.Expr], "a layer's __init__ holds only its docstring"


def test_the_readmes_layout_table_names_every_module_in_its_layer():
    """A newcomer reads the layout in the README first: each layer's row names each of its modules."""
    rows = {
        line.split("|")[1].split("(")[0].strip(): line.split("|")[2]
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| ") and line.split("|")[1].split("(")[0].strip() in LAYERS
    }
    missing = {
        layer: [m for m in modules if f"`{m.split('.')[-1]}.py`" not in rows.get(layer, "")]
        for layer, modules in LAYERS.items()
    }
    assert not any(missing.values()), f"README's layout table lacks: {missing}"


def test_the_package_init_imports_nothing_of_its_own():
    """Every module imports ``headshot`` first: its ``__init__`` must stay a leaf."""
    edges = imports((PKG / "__init__.py").read_text(), "headshot.__init__")
    assert not [e for e in edges if e.target.split(".")[0] == "headshot"], edges


def _path(module: str) -> Path:
    return PKG.joinpath(*module.split(".")).with_suffix(".py")


@pytest.mark.parametrize("module", ORDER)
def test_module_imports_only_public_names_of_modules_below_it(module):
    found = violations(_path(module).read_text(), f"headshot.{module}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", [ROOT / "app.py", *sorted((ROOT / "benchmarks").glob("*.py"))], ids=_where)
def test_app_and_benchmarks_sit_below_the_package(path):
    found = violations(path.read_text(), _where(path))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", _files(), ids=_where)
def test_every_headshot_import_names_a_real_module(path):
    """``from headshot[.folder] import x`` names a module, a layer folder or something ``__init__``
    defines (``__version__``); ``from headshot.x import y`` names a module x."""
    defined = {
        target.id
        for node in ast.parse((PKG / "__init__.py").read_text()).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    unknown = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(_where(path), node.level, node.module) if node.level else node.module or ""
            names = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            base, names = "", [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "headshot" or len(parts) < 2:
                continue
            ok = (
                _module_of(name) is not None
                or (len(parts) == 2 and parts[1] in FOLDERS | defined)
                or (base and _module_of(base) is not None)  # an attribute of a module
            )
            if not ok:
                unknown.append(f"{_where(path)}:{node.lineno} imports {name}")
    assert unknown == []


def _long_functions(path: Path) -> list[tuple[int, str, int, str]]:
    """(length, name, line, docstring) of every function or method in ``path`` over LONG_FUNCTION lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > LONG_FUNCTION:
                found.append((length, node.name, node.lineno, ast.get_docstring(node) or ""))
    return found


@pytest.mark.parametrize("path", [*sorted(PKG.rglob("*.py")), ROOT / "app.py"], ids=_where)
def test_a_long_function_says_why_at_its_top(path):
    unexplained = [
        f"{_where(path)}:{line} {name} is {length} lines"
        for length, name, line, doc in _long_functions(path)
        if "Long because" not in doc
    ]
    assert unexplained == [], f'split these or say why at the top ("Long because ..."): {unexplained}'


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=_where)
def test_no_module_is_a_warehouse(path):
    lines = path.read_text().count("\n")
    assert lines <= LONG_MODULE, f"{_where(path)} has {lines} lines: split it by job"
    if path == PKG / "gpu" / "pipeline.py":
        assert lines < ENTRY_POINTS_MAX, f"the GPU entry points grew to {lines} lines: keep them thin"


# --------------------------------------------------------------------------------------
# The checker itself: planted back-edges must fail it
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    [
        "from headshot import studio",
        "from headshot import config, studio",
        "from .web import ui",
        "from .studio import generate",
        "import headshot.studio as s",
        "import headshot.studio",
        "from headshot.studio import generate",
        "from headshot.gpu import pipeline",
        "from headshot.gpu.models import Models",
        "from headshot.faces import analyzer",
        "def later():\n    from .gpu import pipeline\n",
        "import importlib\nimportlib.import_module('headshot.studio')",
        "import importlib\nimportlib.import_module('.web.ui', 'headshot')",
    ],
)
def test_a_planted_upward_import_fails_the_check(planted, tmp_path):
    original = (PKG / "imaging.py").read_text()
    copy = tmp_path / "imaging.py"
    copy.write_text(original + "\n\n" + planted + "\n")
    found = violations(copy.read_text(), "headshot.imaging")
    planted_lines = [f for f in found if int(f.split(":")[1].split()[0]) > original.count("\n")]
    assert planted_lines and all("runs up the layers" in f for f in planted_lines), found


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        (
            "gpu.pipeline",
            "from . import models, aoti, zerogpu\nfrom .models import Models\nfrom .. import config",
        ),
        ("gpu.recipe", "from headshot.gpu import adapters\nfrom headshot.faces.identity import Identity"),
        ("web.ui", "from .endpoints import generate\nfrom headshot import studio"),
    ],
)
def test_imports_within_and_below_the_layer_pass(module, planted):
    assert violations(planted + "\n", f"headshot.{module}") == []


@pytest.mark.parametrize(
    ("module", "planted", "words"),
    [
        ("gpu.models", "from . import pipeline", "not above gpu.models"),
        ("faces.analyzer", "from headshot.faces import validation", "not above faces.analyzer"),
        ("web.files", "from .ui import build_demo", "not above web.files"),
        ("faces.identity", "from headshot.gpu import models", "runs up the layers"),
        ("studio", "from headshot.web.endpoints import generate", "runs up the layers"),
    ],
)
def test_a_planted_later_or_upward_import_in_a_layer_folder_fails(module, planted, words):
    found = violations(planted + "\n", f"headshot.{module}")
    assert found and all(words in f for f in found), found


@pytest.mark.parametrize(
    "planted",
    [
        "from headshot.gpu.models import _pipelines",
        "from ..errors import _describe",
        "from headshot.web.endpoints import Thing, _user_errors",
        "from headshot import config\nx = config._read_env",
        "from headshot.gpu import models as m\nm._cache.clear()",
        "import headshot.studio as s\ns._pending",
    ],
)
def test_a_planted_private_import_fails_the_check(planted):
    found = violations(planted + "\n", "headshot.web.ui")
    private = [f for f in found if "private name" in f]
    assert private, found


def test_a_module_may_use_its_own_private_names_and_dunders():
    source = (
        "from headshot import __version__, config\nfrom headshot.web.ui import _local\nx = config.__name__\n"
    )
    assert private_uses(source, "headshot.web.ui") == []


@pytest.mark.parametrize(
    "planted", ["from headshot.gpu import pipeline", "from headshot.gpu.zerogpu import user_error"]
)
def test_the_web_layer_reaching_into_the_gpu_layer_fails(planted):
    found = violations(planted + "\n", "headshot.web.callbacks")
    assert found and all("only through the flows" in f for f in found), found


def test_a_package_init_that_imports_fails():
    assert violations("from . import models\n", "headshot.gpu.__init__")
    assert violations("from headshot.gpu.models import Models\n", "headshot.gpu.__init__")


def test_a_long_function_without_a_reason_is_found(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LONG_FUNCTION + 5))
    plain, explained = tmp_path / "plain.py", tmp_path / "explained.py"
    plain.write_text(f'def long():\n    """Does things."""\n{body}\n')
    explained.write_text(f'def long():\n    """Does things. Long because: a table."""\n{body}\n')
    assert [name for _, name, _, doc in _long_functions(plain) if "Long because" not in doc] == ["long"]
    assert [name for _, name, _, doc in _long_functions(explained) if "Long because" not in doc] == []


@pytest.mark.parametrize(
    ("module", "planted", "words"),
    [
        ("styles", "def f():\n    import torch\n", "must not touch torch"),
        ("imaging", "import torch.nn.functional as F", "must not touch torch"),
        ("studio", "from diffusers import StableDiffusionXLPipeline", "must not touch torch"),
        ("web.ui", "from peft import LoraConfig", "must not touch torch"),
        (
            "studio",
            "import gradio as gr",
            "only web.callbacks/web.cards/web.endpoints/web.files/web.layout/web.ui may import",
        ),
        ("studio", "import spaces", "only gpu.pipeline may import"),
        ("gpu.models", "import spaces", "only gpu.pipeline may import"),
        ("web.ui", "import app", "never imports app.py"),
        ("gpu.pipeline", "from benchmarks import run", "never imports app.py"),
        ("studio", "from tests.e2e import free_port", "never imports app.py"),
    ],
)
def test_planted_library_imports_fail_the_check(module, planted, words):
    found = violations(f"def f():\n    pass\n\n{planted}\n", f"headshot.{module}")
    assert found and all(words in f for f in found), found


def test_app_and_benchmarks_may_import_any_module_but_not_each_other_upwards():
    ok = "from headshot.web import ui\nfrom headshot import studio\nimport headshot.gpu.lora\nfrom benchmarks import likeness\n"
    assert violations(ok, "benchmarks.run") == []
    assert violations("from headshot.web.ui import build_demo\n", "app") == []
    assert violations("import app\n", "benchmarks.run")
    assert violations("from benchmarks import run\n", "app")


def test_allowed_forms_pass():
    source = (
        "from . import __version__, config\nfrom .errors import InvalidRequest\nimport headshot.imaging\n"
        "def f():\n    from headshot.config import MAX_STEPS\n    import numpy\n"
    )
    assert violations(source, "headshot.styles") == []
    assert violations("import spaces\nimport torch\n", "headshot.gpu.pipeline") == []
    assert violations("import gradio as gr\n", "headshot.web.ui") == []
