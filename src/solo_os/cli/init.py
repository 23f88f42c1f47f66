"""``solo-os init [DIR]``: scaffold a new project from the templates shipped in the package."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer

import solo_os
from solo_os import errors
from solo_os.cli import _common

TEMPLATE = ("templates", "project")
_SKIP = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SERVICE = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class Planned:
    target: Path  # relative to the project folder
    text: str


def service_name(directory: Path) -> str:
    """A service name from the folder's name: lowercase letters, digits and '-'."""
    name = _SERVICE.sub("-", directory.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"app-{name}".rstrip("-") if name else "solo-os-app"
    return name[:40].rstrip("-")


def template_root() -> Traversable:
    root = resources.files(solo_os)
    for part in TEMPLATE:
        root = root / part
    return root


def plan(service: str) -> list[Planned]:
    """Every file of the template with its target path and rendered text, sorted."""
    out: list[Planned] = []

    def walk(node: Traversable, rel: Path) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in _SKIP or child.name.endswith((".pyc", ".pyo")):
                continue
            name = "." + child.name[len("dot-") :] if child.name.startswith("dot-") else child.name
            if child.is_dir():
                walk(child, rel / name)
            else:
                text = child.read_text(encoding="utf-8")
                text = text.replace("__SERVICE__", service).replace(
                    "__SOLO_OS_VERSION__", solo_os.__version__
                )
                out.append(Planned(rel / name, text))

    walk(template_root(), Path())
    return out


def init(
    directory: Annotated[Path, typer.Argument(help="folder of the new project (created if missing)")] = Path(
        "."
    ),
    force: Annotated[bool, typer.Option("--force", help="overwrite files that already exist")] = False,
    service: Annotated[str | None, typer.Option(help="service name (default: the folder's name)")] = None,
) -> None:
    """Scaffold a project: app.py, tests, .env.example, Dockerfile, compose, terraform/."""
    with _common.friendly_errors():
        name = service or service_name(directory)
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", name):
            raise errors.ConfigError(
                f"--service: {name!r}: use lowercase letters, digits and '-' (a letter first)"
            )
        if directory.exists() and not directory.is_dir():
            raise errors.ConfigError(f"DIR: {str(directory)!r} exists and is not a folder")
        files = plan(name)
        existing = [f.target for f in files if (directory / f.target).exists()]
        if existing and not force:
            for path in existing:
                _common.err.print(f"[red]exists:[/red] {directory / path}", highlight=False)
            _common.err.print(
                f"{len(existing)} file(s) already exist; nothing was written. "
                "Pass --force to overwrite them.",
                highlight=False,
            )
            raise typer.Exit(1)
        for f in files:
            target = directory / f.target
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f.text, encoding="utf-8")
            except OSError as exc:
                raise errors.ConfigError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    replaced = f" ({len(existing)} overwritten)" if existing else ""
    _common.out.print(
        f"wrote {len(files)} file(s){replaced} in {directory} for service {name!r}",
        highlight=False,
    )
    for f in files:
        _common.out.print(f"  {f.target}", highlight=False)
    steps = [] if directory.resolve() == Path.cwd() else [f"cd {directory}"]
    steps += [
        "cp .env.example .env                 # then set the signing secrets",
        "pip install -r requirements-dev.txt",
        "pytest                               # the app's tests",
        "solo-os run app.py                   # http://127.0.0.1:8000/webhooks/billing",
    ]
    _common.out.print("\nnext:\n" + "\n".join(f"  {s}" for s in steps), highlight=False)
