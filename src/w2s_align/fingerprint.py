"""Code fingerprints: what a rule's code *does*, as one short hash.

A rule passes the fingerprint of its script and of the library modules the script imports (transitively)
as a param, so Snakemake reruns a job when that code changes behaviour, and not for a docstring, comment
or formatting edit: each file is hashed as its syntax tree with docstrings removed, unparsed to normalised
source. (profiles/default turns off Snakemake's own `code` trigger, which reruns on a script's mtime.)
Standard library only (it runs at DAG time).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "w2s_align"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


@functools.cache
def normalised_source(path: Path) -> str:
    """The module's code without docstrings, comments or formatting."""
    return ast.unparse(_strip_docstrings(ast.parse(path.read_text(encoding="utf-8"))))


def _module_file(package_dir: Path, module: str) -> Path | None:
    parts = module.split(".")[1:]
    path = package_dir.joinpath(*parts)
    if path.is_dir():
        return path / "__init__.py"
    path = path.with_suffix(".py")
    return path if path.is_file() else None


def _imports(tree: ast.AST, module: str) -> list[str]:
    """w2s_align modules imported anywhere in `tree` (also inside functions), with their parent packages."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            if base.split(".")[0] == PACKAGE:
                found += [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    parents = [".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 1)]
    return found + parents


def closure(package_dir: str | Path, roots: tuple[str, ...]) -> dict[str, Path]:
    """Module name -> file of every w2s_align module reachable from `roots` by imports."""
    package_dir = Path(package_dir)
    files: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        path = _module_file(package_dir, name)
        if path is None or name in files:
            continue
        files[name] = path
        here = (
            f"{name}.__init__" if path.name == "__init__.py" else name
        )  # relative imports start in the package
        todo += _imports(ast.parse(path.read_text(encoding="utf-8")), here)
    return files


def script_roots(script: str | Path) -> tuple[str, ...]:
    """The w2s_align modules a workflow script imports."""
    return tuple(sorted(set(_imports(ast.parse(Path(script).read_text(encoding="utf-8")), "__main__"))))


@functools.cache
def code_fingerprint(package_dir: str, script: str) -> str:
    """16-hex hash of the normalised source of `script` and of every library module it uses."""
    digest = hashlib.sha256(normalised_source(Path(script)).encode())
    for name, path in sorted(closure(package_dir, script_roots(script)).items()):
        digest.update(f"{name}\n{normalised_source(path)}\n".encode())
    return digest.hexdigest()[:16]
