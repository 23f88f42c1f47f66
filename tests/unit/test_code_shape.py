"""The shape of src/solo_os (issue 15): small modules, small functions, no helper inheritance.

Checked on the source's syntax tree (nothing is imported), over every module of src/solo_os
except the database migrations (src/solo_os/store/migrations), which are history:

- **Modules**: at most ``MAX_MODULE_LINES`` lines.
- **Functions** (and methods, nested ones included): at most ``MAX_FUNCTION_LINES`` lines,
  counted from the ``def`` line to the last line of the body; decorators are not counted.
  A CLI command (a function in src/solo_os/cli decorated with ``<group>.command(...)`` or
  ``<group>.group(...)``, or with a parameter declared by ``typer.Option``/``typer.Argument``)
  is counted from its first body statement: its signature is its option list.
- **Classes that inherit only to share helpers**: a class may not inherit from a
  *helper base*, i.e. a class defined in src/solo_os whose name ends in ``Queries`` or
  ``Mixin``, or whose body declares, under ``if TYPE_CHECKING:``, what ``self`` offers (the
  mark of a mixin: methods it uses but only its subclass provides). Share such code by
  composition (a module of functions, an object passed in) instead.

``KNOWN_OFFENDERS`` held what was over the limits while issue 15's phase 2 split the modules;
it is empty now and should stay so. ``EXEMPT`` lists deliberate exceptions, each with its
reason (none today). Any other offence fails the test.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "solo_os"
EXCLUDED = (SRC / "store" / "migrations",)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
HELPER_SUFFIXES = ("Queries", "Mixin")

# offence -> reason (deliberate, reviewed exceptions)
EXEMPT: dict[str, str] = {}

# Offences tolerated while issue 15's phase 2 split the modules: none are left; keep it empty.
KNOWN_OFFENDERS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Module:
    rel: str
    tree: ast.Module
    lines: int


def _modules() -> list[Module]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        if any(path.is_relative_to(x) for x in EXCLUDED):
            continue
        text = path.read_text(encoding="utf-8")
        out.append(Module(path.relative_to(SRC).as_posix(), ast.parse(text), len(text.splitlines())))
    return out


def _is_cli_command(module: Module, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if not module.rel.startswith("cli/"):
        return False
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr in ("command", "group"):
            return True
    # typer commands registered lazily (cli/__init__.py): parameters declared as options
    args = fn.args
    declared = [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    declared += [*args.defaults, *args.kw_defaults]
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute | ast.Name)
        and _base_name(call.func) in ("Option", "Argument")
        for node in declared
        if node is not None
        for call in ast.walk(node)
    )


def _function_length(module: Module, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    end = fn.end_lineno or fn.lineno
    start = fn.body[0].lineno if _is_cli_command(module, fn) else fn.lineno
    return end - start + 1


def _qualified_functions(
    node: ast.AST, prefix: str = ""
) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            out.append((name, child))
            out.extend(_qualified_functions(child, f"{name}."))
        elif isinstance(child, ast.ClassDef):
            out.extend(_qualified_functions(child, f"{prefix}{child.name}."))
        else:
            out.extend(_qualified_functions(child, prefix))
    return out


def _declares_self_under_type_checking(cls: ast.ClassDef) -> bool:
    for stmt in cls.body:
        if (
            isinstance(stmt, ast.If)
            and isinstance(stmt.test, ast.Name | ast.Attribute)
            and (stmt.test.id if isinstance(stmt.test, ast.Name) else stmt.test.attr) == "TYPE_CHECKING"
            and any(isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) for s in stmt.body)
        ):
            return True
    return False


def _base_name(base: ast.expr) -> str | None:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


def offences() -> set[str]:
    modules = _modules()
    found: set[str] = set()
    classes = {
        node.name: node for m in modules for node in ast.walk(m.tree) if isinstance(node, ast.ClassDef)
    }
    helpers = {
        name
        for name, cls in classes.items()
        if name.endswith(HELPER_SUFFIXES) or _declares_self_under_type_checking(cls)
    }
    for m in modules:
        if m.lines > MAX_MODULE_LINES:
            found.add(f"module {m.rel}")
        for name, fn in _qualified_functions(m.tree):
            if _function_length(m, fn) > MAX_FUNCTION_LINES:
                found.add(f"function {m.rel}:{name}")
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef) and any(b in helpers for b in map(_base_name, node.bases)):
                found.add(f"class {m.rel}:{node.name}")
    return found


def _measure(offence: str) -> str:
    """The offence with its size, for the failure message."""
    kind, _, where = offence.partition(" ")
    if kind == "module":
        return f"{offence}: {len((SRC / where).read_text(encoding='utf-8').splitlines())} lines"
    if kind == "function":
        rel, _, qual = where.partition(":")
        m = next(x for x in _modules() if x.rel == rel)
        fn = dict(_qualified_functions(m.tree))[qual]
        return f"{offence}: {_function_length(m, fn)} lines"
    rel, _, name = where.partition(":")
    m = next(x for x in _modules() if x.rel == rel)
    [cls] = [n for n in ast.walk(m.tree) if isinstance(n, ast.ClassDef) and n.name == name]
    return f"{offence}: inherits {', '.join(filter(None, map(_base_name, cls.bases)))}"


def test_no_new_offences() -> None:
    new = offences() - KNOWN_OFFENDERS - set(EXEMPT)
    assert not new, "over the shape limits (see this test's docstring):\n" + "\n".join(
        sorted(map(_measure, new))
    )


def test_exemptions_have_reasons_and_are_still_needed() -> None:
    assert all(reason.strip() for reason in EXEMPT.values())
    assert not set(EXEMPT) - offences(), "EXEMPT lists something that is within the limits"


def test_the_checks_catch_what_they_describe(tmp_path: Path) -> None:
    """The detectors on small samples: a long function, a CLI option list, a mixin."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def long():\n{body}\n\ndef short():\n    return 1\n")
    m = Module("x.py", tree, 0)
    lengths = {name: _function_length(m, fn) for name, fn in _qualified_functions(tree)}
    assert lengths == {"long": MAX_FUNCTION_LINES + 1, "short": 2}

    params = ",\n".join(f"    opt{i}: int" for i in range(MAX_FUNCTION_LINES))
    cli_src = f"@group.command('x')\ndef cmd(\n{params},\n) -> None:\n    run()\n"
    cli = Module("cli/x.py", ast.parse(cli_src), 0)
    [(_, cmd)] = _qualified_functions(cli.tree)
    assert _function_length(cli, cmd) == 1
    assert _function_length(Module("ops/x.py", cli.tree, 0), cmd) > MAX_FUNCTION_LINES

    mixin = ast.parse(
        "class Base:\n    if TYPE_CHECKING:\n        def _read(self): ...\n"
        "class Plain:\n    def run(self): ...\n"
    )
    declared = {
        c.name: _declares_self_under_type_checking(c) for c in mixin.body if isinstance(c, ast.ClassDef)
    }
    assert declared == {"Base": True, "Plain": False}
