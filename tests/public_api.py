"""One check shared by the packages' public-surface tests."""

from __future__ import annotations

import inspect
import sys
from types import ModuleType


def assert_reexported(package: ModuleType, name: str) -> None:
    """`package.name` is the very object a module of the package defines, not a stand-in."""
    value = getattr(package, name)
    prefix = package.__name__ + "."
    if inspect.isclass(value) or inspect.isfunction(value):
        # A class or function: exported under its own name, from the module that defines it.
        assert value.__module__.startswith(prefix), (name, value.__module__)
        assert value.__name__ == name, (name, value.__name__)
        assert getattr(sys.modules[value.__module__], name) is value, name
    else:
        # A type alias or a constant: the same object under the same name in one of its modules.
        homes = [
            module_name
            for module_name, module in list(sys.modules.items())
            if module_name.startswith(prefix) and module is not None and getattr(module, name, None) is value
        ]
        assert homes, f"{name} is not the object any {package.__name__} module defines"
