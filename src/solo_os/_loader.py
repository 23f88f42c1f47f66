"""Load the user's ``App`` from ``path/to/file.py`` or ``module:attribute``.

A mistake in the app's code (a syntax error, an import that fails, an exception while it is
defined) is a ``ConfigError`` of one line, ``file:line: what``, rather than a traceback through
the import machinery.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from solo_os import app as app_mod
from solo_os import errors


def load_app(target: str) -> app_mod.App:
    module_name, _, attr = target.partition(":")
    if module_name.endswith(".py") or "/" in module_name or Path(module_name).is_file():
        path = Path(module_name).resolve()
        if not path.is_file():
            raise errors.ConfigError(f"APP: no such file {module_name!r}")
        # The app's own folder comes first, so its sibling modules import as they would there.
        sys.path.insert(0, str(path.parent))
        name = f"solo_os_user_app_{abs(hash(str(path))):x}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise errors.ConfigError(f"APP: cannot load {module_name!r} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loader = spec.loader
        _explained(lambda: loader.exec_module(module), module_name)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            module = _import(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise errors.ConfigError(f"APP: no module named {module_name!r}") from None
            raise
    if attr:
        found = getattr(module, attr, None)
        if not isinstance(found, app_mod.App):
            raise errors.ConfigError(f"APP: {target!r} is not a solo_os.App")
        return found
    apps = [v for v in vars(module).values() if isinstance(v, app_mod.App)]
    if len(apps) != 1:
        raise errors.ConfigError(
            f"APP: {module_name!r} defines {len(apps)} solo_os.App objects; name one as {module_name}:NAME"
        )
    return apps[0]


def _import(module_name: str) -> ModuleType:
    module = _explained(lambda: importlib.import_module(module_name), module_name)
    assert module is not None
    return module


def _explained(load: Callable[[], ModuleType | None], what: str) -> ModuleType | None:
    """Run the app's module code; its failures become one ``file:line: error`` line."""
    try:
        return load()
    except (errors.ConfigError, KeyboardInterrupt, SystemExit):
        raise
    except ModuleNotFoundError as exc:
        if exc.name and what.partition(":")[0].startswith(exc.name):
            raise  # the app's own module is missing: the caller says so
        raise errors.ConfigError(f"APP: {_where(exc)}: {type(exc).__name__}: {exc}") from None
    except SyntaxError as exc:
        where = f"{_short(exc.filename or what)}:{exc.lineno or '?'}"
        raise errors.ConfigError(f"APP: {where}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise errors.ConfigError(f"APP: {_where(exc)}: {type(exc).__name__}: {exc}") from None


def _where(exc: BaseException) -> str:
    """The innermost ``file:line`` of the traceback outside Python's import machinery."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    if not frames:
        return "?"
    last = frames[-1]
    return f"{_short(last.filename)}:{last.lineno}"


def _short(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative
