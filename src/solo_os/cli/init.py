"""``solo-os init [DIR]``: scaffold a new project from the templates shipped in the package."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

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


def install_source() -> tuple[str, str]:
    """What ``pip install`` needs to get this solo-os, and a phrase saying where that is.

    solo-os is not on PyPI yet: when it was installed from a local checkout or wheel (pip and uv
    record that in ``direct_url.json``), that path; otherwise ``solo-os==VERSION``."""
    pinned = f"solo-os=={solo_os.__version__}"
    try:
        raw = metadata.distribution("solo-os").read_text("direct_url.json")
        url = str(json.loads(raw or "{}").get("url", ""))
    except (metadata.PackageNotFoundError, ValueError):
        url = ""
    if not url.startswith("file://"):
        return pinned, f"the package index (`{pinned}`)"
    path = unquote(urlsplit(url).path)
    what = "a wheel" if path.endswith(".whl") else "a checkout"
    return shlex.quote(path), f"{what} at `{path}`"


def plan(service: str) -> list[Planned]:
    """Every file of the template with its target path and rendered text, sorted."""
    out: list[Planned] = []
    install, origin = install_source()

    def walk(node: Traversable, rel: Path) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in _SKIP or child.name.endswith((".pyc", ".pyo")):
                continue
            name = "." + child.name[len("dot-") :] if child.name.startswith("dot-") else child.name
            if child.is_dir():
                walk(child, rel / name)
            else:
                text = child.read_text(encoding="utf-8")
                text = (
                    text.replace("__SERVICE__", service)
                    .replace("__SOLO_OS_VERSION__", solo_os.__version__)
                    .replace("__SOLO_OS_INSTALL__", install)
                    .replace("__SOLO_OS_ORIGIN__", origin)
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
    as_json: _common.Json = False,
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
            problems = [f"exists: {directory / path}" for path in existing]
            problems.append(
                f"{len(existing)} file(s) already exist; nothing was written. Pass --force to overwrite them."
            )
            _common.fail("exists", problems, _common.EXIT_FAILED)
        _write(directory, files)
    steps = _next_steps(directory)
    if as_json:
        _common.emit_json(
            {
                "directory": str(directory),
                "service": name,
                "files": [str(f.target) for f in files],
                "overwritten": [str(p) for p in existing],
                "next": steps,
            }
        )
        return
    replaced = f" ({len(existing)} overwritten)" if existing else ""
    _common.out.print(
        f"wrote {len(files)} file(s){replaced} in {directory} for service {name!r}",
        highlight=False,
    )
    for f in files:
        _common.out.print(f"  {f.target}", highlight=False)
    _common.out.print("\nnext:\n" + "\n".join(f"  {s}" for s in steps), highlight=False)


def _write(directory: Path, files: list[Planned]) -> None:
    for f in files:
        target = directory / f.target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.text, encoding="utf-8")
        except OSError as exc:
            raise errors.ConfigError(f"cannot write {str(target)!r}: {exc.strerror}") from None


def _next_steps(directory: Path) -> list[str]:
    """What to run after ``init``, from the shell the command ran in."""
    install, _ = install_source()
    steps = [] if directory.resolve() == Path.cwd() else [f"cd {shlex.quote(str(directory))}"]
    steps += [
        "python3 -m venv .venv && . .venv/bin/activate",
        f"pip install {install}",
        "pip install -r requirements-dev.txt",
        "cp .env.example .env                 # then set the signing secrets",
        "pytest                               # the app's tests",
        "solo-os run app.py                   # http://127.0.0.1:8000/webhooks/billing",
    ]
    return steps
