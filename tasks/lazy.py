"""Modules loaded on first use, so that `inv --list` does not pay for what a task it does
not run would import (importlib's LazyLoader: the module runs at its first attribute access)."""
import importlib.util
import sys


def lazy_module(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
