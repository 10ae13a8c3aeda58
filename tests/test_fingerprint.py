"""Code fingerprints (w2s_align.fingerprint): a rule reruns when the code its script runs changes behaviour,
and not for docstring, comment or formatting edits, nor for edits of modules the script never imports.
Edits are made in a temporary copy of src/w2s_align and workflow/scripts; milliseconds, no Snakemake."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from w2s_align.fingerprint import closure, code_fingerprint, normalised_source, script_roots

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow/scripts").glob("*.py"))


class Copy:
    """src/w2s_align and workflow/scripts copied to a temporary folder."""

    def __init__(self, root: Path):
        self.pkg = root / "src/w2s_align"
        self.scripts = root / "workflow/scripts"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / "src/w2s_align", self.pkg, ignore=ignore)
        shutil.copytree(REPO / "workflow/scripts", self.scripts, ignore=ignore)

    def fingerprint(self, script: str) -> str:
        code_fingerprint.cache_clear()
        normalised_source.cache_clear()
        return code_fingerprint(str(self.pkg), str(self.scripts / script))

    def module(self, relative: str) -> Path:
        return self.pkg / relative

    def closure(self, script: str) -> set[str]:
        return set(closure(self.pkg, script_roots(self.scripts / script)))


@pytest.fixture
def repo(tmp_path) -> Copy:
    yield Copy(tmp_path)
    code_fingerprint.cache_clear()
    normalised_source.cache_clear()


def edit(path: Path, change) -> None:
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


def assert_same_after(repo: Copy, script: str, path: Path, change) -> None:
    before = repo.fingerprint(script)
    original = path.read_text(encoding="utf-8")
    edit(path, change)
    assert path.read_text(encoding="utf-8") != original, "the edit changed nothing"
    assert repo.fingerprint(script) == before, (
        f"{path.name}: a {change.__name__} edit changed the fingerprint"
    )


def assert_changed_after(repo: Copy, script: str, path: Path, change) -> None:
    before = repo.fingerprint(script)
    edit(path, change)
    assert repo.fingerprint(script) != before, f"{path.name}: a {change.__name__} edit left the fingerprint"


# --- edits that work on any module (found with ast, so they do not depend on today's code) ---------


def _string_start(source: str, node: ast.expr) -> int:
    """Offset just after the opening quote(s) of the string constant `node`."""
    lines = source.splitlines(keepends=True)
    offset = sum(len(line) for line in lines[: node.lineno - 1]) + node.col_offset
    while source[offset] not in "'\"":  # a prefix such as r
        offset += 1
    return offset + (3 if source[offset : offset + 3] in ('"""', "'''") else 1)


def docstrings(source: str, new: str) -> str:
    """Every docstring (module, class, function) gets `new` in front of its text."""
    starts = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
            and isinstance(node.body[0].value.value, str)
        ):
            starts.append(_string_start(source, node.body[0].value))
    assert starts, "no docstring to edit"
    for start in sorted(starts, reverse=True):
        source = source[:start] + new + source[start:]
    return source


def docstring(source: str) -> str:
    return docstrings(source, "Edited wording. ")


def comment(source: str) -> str:
    """A comment line at the top and after every `def` line, and at the end of every `def` line."""
    out = ["# a comment\n"]
    for line in source.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.startswith(("def ", "async def ")) and line.rstrip().endswith(":"):
            indent = line[: len(line) - len(stripped)]
            line = f"{line.rstrip()}  # why it is so\n{indent}    # and a note\n"
        out.append(line)
    return "".join(out) + "\n# trailing comment\n"


def reformat(source: str) -> str:
    """The same syntax tree written out differently (quotes, line breaks, spacing, no comments)."""
    return ast.unparse(ast.parse(source)) + "\n\n\n"


def blank_lines(source: str) -> str:
    """Extra blank lines between top-level statements and a call broken over lines."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in reversed(tree.body):
        lines.insert(
            node.lineno - 1
            if not getattr(node, "decorator_list", None)
            else node.decorator_list[0].lineno - 1,
            "\n\n",
        )
    return "".join(lines)


def constant(source: str) -> str:
    """The first number literal in the code (not a docstring) changed: a behaviour edit."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            lines = source.splitlines(keepends=True)
            line = lines[node.lineno - 1]
            lines[node.lineno - 1] = (
                line[: node.col_offset] + repr(node.value + 1) + line[node.end_col_offset :]
            )
            return "".join(lines)
    raise AssertionError("no number literal to change")


def statement(source: str) -> str:
    """A new top-level statement: a behaviour edit."""
    return source + "\nEXTRA_SETTING = 1\n"


# --- the closure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_script_closure_contains_dag_time_modules(script):
    """The config readers, checks, paths, extension list and cluster plan run at DAG time only; a stage
    importing them would rerun on every edit of DAG-time code."""
    modules = set(closure(REPO / "src/w2s_align", script_roots(script)))
    assert modules, f"{script.name} imports nothing from w2s_align"
    dag_time = {
        m
        for m in modules
        if m.startswith("w2s_align.cluster")
        or m.rsplit(".", 1)[-1] in ("settings", "validate", "paths", "extensions")
        and ".settings." in m
    }
    assert not dag_time


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_has_a_fingerprint(script):
    value = code_fingerprint(str(REPO / "src/w2s_align"), str(script))
    assert len(value) == 16 and int(value, 16) >= 0


# --- edits that keep the fingerprint ---------------------------------------------------------------

# (script, a module it imports indirectly: train.classify -> train.losses, eval.generation -> eval.bootstrap)
IN_CLOSURE = [("train_classifier.py", "train/losses.py"), ("toxicity_metrics.py", "eval/bootstrap.py")]


@pytest.mark.parametrize("script, module", IN_CLOSURE)
@pytest.mark.parametrize("change", [docstring, comment, reformat, blank_lines], ids=lambda f: f.__name__)
def test_docstring_comment_and_format_edits_keep_the_fingerprint(repo, script, module, change):
    assert "w2s_align." + module[:-3].replace("/", ".") in repo.closure(script)
    assert_same_after(repo, script, repo.module(module), change)


@pytest.mark.parametrize("change", [docstring, comment, reformat], ids=lambda f: f.__name__)
def test_script_docstring_comment_and_format_edits_keep_the_fingerprint(repo, change):
    assert_same_after(repo, "train_classifier.py", repo.scripts / "train_classifier.py", change)


@pytest.mark.parametrize(
    "script, outside, user",
    [
        ("train_classifier.py", "infer/sampling.py", "lm_generations.py"),
        ("toxicity_metrics.py", "eval/classification.py", "metrics.py"),
        ("metrics.py", "eval/generation.py", "toxicity_metrics.py"),
        ("split_data.py", "models/causal_lm.py", "train_lm.py"),
    ],
)
def test_edits_outside_the_closure_keep_the_fingerprint(repo, script, outside, user):
    name = "w2s_align." + outside[:-3].replace("/", ".")
    assert name not in repo.closure(script) and name in repo.closure(user)
    before, before_user = repo.fingerprint(script), repo.fingerprint(user)
    edit(repo.module(outside), constant)
    assert repo.fingerprint(script) == before
    assert repo.fingerprint(user) != before_user  # the same edit does rerun a script that uses it


# --- edits that change it --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script, module, change",
    [
        *[(script, module, change) for script, module in IN_CLOSURE for change in (constant, statement)],
        ("train_classifier.py", "train/classify.py", constant),  # imported by the script itself
        ("train_classifier.py", "settings/specs.py", constant),
        ("toxicity_metrics.py", "__init__.py", statement),  # the package itself is part of every closure
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_behaviour_edits_change_the_fingerprint(repo, script, module, change):
    assert_changed_after(repo, script, repo.module(module), change)


def test_behaviour_edit_of_the_script_changes_the_fingerprint(repo):
    assert_changed_after(repo, "train_classifier.py", repo.scripts / "train_classifier.py", statement)
    script = repo.scripts / "train_classifier.py"
    before = repo.fingerprint("train_classifier.py")
    edit(
        script,
        lambda s: s.replace("seed=int(snakemake.wildcards.seed)", "seed=int(snakemake.wildcards.seed) + 1"),
    )
    assert repo.fingerprint("train_classifier.py") != before


def test_renaming_a_module_changes_the_fingerprint(repo):
    """Module names are part of the hash: moving code between modules is a change."""
    before = repo.fingerprint("toxicity_metrics.py")
    shutil.move(repo.module("eval/bootstrap.py"), repo.module("eval/resampling.py"))
    for path in (repo.module("eval/generation.py"), repo.module("eval/__init__.py")):
        edit(
            path,
            lambda s: s.replace("eval.bootstrap", "eval.resampling").replace(" .bootstrap", " .resampling"),
        )
    if "w2s_align.eval.resampling" not in repo.closure("toxicity_metrics.py"):
        pytest.skip("eval/generation.py does not import eval/bootstrap.py by name")
    assert repo.fingerprint("toxicity_metrics.py") != before


# --- imports that are followed ---------------------------------------------------------------------


def add_module(repo: Copy, relative: str, value: int) -> Path:
    path = repo.module(relative)
    path.write_text(f'"""A helper."""\n\nLIMIT = {value}\n')
    return path


def test_relative_import_is_followed(repo):
    add_module(repo, "eval/helper_rel.py", 1)
    add_module(repo, "helper_up.py", 1)
    edit(
        repo.module("eval/generation.py"),
        lambda s: s + "\nfrom . import helper_rel\nfrom ..helper_up import LIMIT as UP_LIMIT\n",
    )
    assert {"w2s_align.eval.helper_rel", "w2s_align.helper_up"} <= repo.closure("toxicity_metrics.py")
    assert_changed_after(repo, "toxicity_metrics.py", repo.module("eval/helper_rel.py"), constant)
    assert_changed_after(repo, "toxicity_metrics.py", repo.module("helper_up.py"), constant)
    assert_same_after(repo, "toxicity_metrics.py", repo.module("eval/helper_rel.py"), docstring)


def test_relative_import_in_a_package_init_is_followed(repo):
    add_module(repo, "eval/helper_init.py", 1)
    edit(repo.module("eval/__init__.py"), lambda s: s + "\nfrom .helper_init import LIMIT\n")
    assert "w2s_align.eval.helper_init" in repo.closure("toxicity_metrics.py")


def test_function_local_import_is_followed(repo):
    add_module(repo, "helper_local.py", 1)
    edit(
        repo.module("eval/generation.py"),
        lambda s: (
            s + "\n\ndef _uses_helper():\n    from w2s_align.helper_local import LIMIT\n\n    return LIMIT\n"
        ),
    )
    assert "w2s_align.helper_local" in repo.closure("toxicity_metrics.py")
    assert_changed_after(repo, "toxicity_metrics.py", repo.module("helper_local.py"), constant)


def test_plain_import_and_transitive_imports_are_followed(repo):
    add_module(repo, "helper_deep.py", 1)
    repo.module("helper_mid.py").write_text("import w2s_align.helper_deep\n")
    edit(repo.module("eval/bootstrap.py"), lambda s: s + "\nimport w2s_align.helper_mid\n")
    assert {"w2s_align.helper_mid", "w2s_align.helper_deep"} <= repo.closure("toxicity_metrics.py")
    assert_changed_after(repo, "toxicity_metrics.py", repo.module("helper_deep.py"), constant)
