"""The host's folders are layers; imports point down only (docs/architecture.md).

Every ``import`` in every module of ``host/`` is read with :mod:`ast`, including
lazy ones inside functions and those under ``TYPE_CHECKING``: a module may import
its own layer and the layers below it, never a layer above or beside it, and
nothing imports ``tools``. The root package (``flattr_host``: version and name
constants) is importable from anywhere and imports nothing.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "host"

#: Rank of each layer: a module may import a layer of lower rank or its own; two
#: layers of the same rank (delivery, attention) do not know each other.
RANK = {
    "core": 0,
    "protocol": 1,
    "storage": 2,
    "delivery": 3,
    "attention": 3,
    "runtime": 4,
    "tools": 5,
}

#: Modules outside the layers: the package root and ``python -m flattr_host``.
ROOT_MODULES = {"flattr_host", "flattr_host.__main__"}


#: Imports against the rule, each with the reason it still stands (none).
EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(HOST).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("flattr_host", *parts))


def host_modules() -> list[Path]:
    return sorted(HOST.rglob("*.py"))


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every flattr_host module ``path`` imports, anywhere in it.

    ``from flattr_host.x import y`` counts as importing ``flattr_host.x.y`` when ``y``
    is a module (a file or folder), else ``flattr_host.x``.
    """
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("flattr_host")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("flattr_host"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else base))
    return found


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (HOST / rel).with_suffix(".py").is_file() or (HOST / rel / "__init__.py").is_file()


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def allowed(importer: str, imported: str) -> bool:
    if imported == "flattr_host":
        return importer != "flattr_host"
    if importer == "flattr_host.__main__":  # the entry: the message loop or the tools
        return imported in {"flattr_host.runtime.caller", "flattr_host.runtime.stdio",
                            "flattr_host.tools.cli"}
    src, dst = layer_of(importer), layer_of(imported)
    if src is None or dst is None:
        return False
    return src == dst or RANK[dst] < RANK[src]


def test_every_module_lives_in_a_layer() -> None:
    strays = [module_name(p) for p in host_modules()
              if module_name(p) not in ROOT_MODULES and layer_of(module_name(p)) is None]
    assert strays == []
    assert {p.name for p in HOST.iterdir() if p.is_dir() and (p / "__init__.py").exists()} \
        == set(RANK)


def test_imports_point_down_only() -> None:
    wrong = []
    for path in host_modules():
        importer = module_name(path)
        for line, imported in imports_of(path):
            if not allowed(importer, imported) and (importer, imported) not in EXCEPTIONS:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {importer} -> {imported}")
    assert wrong == []


def test_imports_name_real_modules() -> None:
    """A module moved or renamed leaves no import of its old name behind."""
    missing = [f"{p.relative_to(ROOT)}:{line}: {name}" for p in host_modules()
               for line, name in imports_of(p) if not is_module(name)]
    assert missing == []


@pytest.mark.parametrize("layer", sorted(RANK))
def test_a_layer_package_says_what_lives_there_and_imports_nothing(layer: str) -> None:
    """Each folder's ``__init__`` is one docstring line: importing a layer costs nothing."""
    tree = ast.parse((HOST / layer / "__init__.py").read_text())
    assert len(tree.body) == 1
    doc = ast.get_docstring(tree)
    assert doc is not None and "\n" not in doc.strip()


def test_the_wheel_lists_every_layer() -> None:
    """pyproject's explicit package list carries every folder, so the wheel holds them."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    assert {f"flattr_host.{layer}" for layer in RANK} <= set(packages)


def test_the_checker_sees_lazy_and_type_checking_imports() -> None:
    """The rule itself: imports inside functions and TYPE_CHECKING blocks are found."""
    found = {name for _, name in imports_of(HOST / "storage" / "store.py")}
    assert {"flattr_host.core.errors", "flattr_host.core.logs"} <= found  # top, TYPE_CHECKING
    lazy = {name for _, name in imports_of(HOST / "__main__.py")}
    assert "flattr_host.runtime.stdio" in lazy  # inside a function
    assert not allowed("flattr_host.storage.store", "flattr_host.runtime.service")
    assert not allowed("flattr_host.delivery.api", "flattr_host.attention.engine")
    assert not allowed("flattr_host.runtime.stdio", "flattr_host.tools.inspect_client")
    assert allowed("flattr_host.runtime.stdio", "flattr_host.runtime.inspector")
    assert allowed("flattr_host.runtime.stdio", "flattr_host.delivery.submitter")
    assert allowed("flattr_host.attention.service", "flattr_host.attention.engine")


def test_no_private_name_crosses_a_folder() -> None:
    """``from x import _name`` only within a folder: a layer uses another's public API
    (doctor decrypts with the token store's ``unseal``, not its private helpers)."""
    crossing = []
    for path in host_modules():
        importer = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("flattr_host.")):
                continue
            for alias in node.names:
                if (alias.name.startswith("_")
                        and layer_of(node.module) != layer_of(importer)):
                    crossing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}")
    assert crossing == []


def test_each_class_name_means_one_thing() -> None:
    """No two host classes share a name (the API's verdict is not the attention
    engine's decision)."""
    where: dict[str, list[str]] = {}
    for path in host_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(module_name(path))
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}
