"""Load the user's ``App`` from ``path/to/file.py`` or ``module:attribute``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

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
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            module = importlib.import_module(module_name)
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
