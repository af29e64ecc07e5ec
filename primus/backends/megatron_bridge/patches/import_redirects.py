"""Per-importer import redirects: hand a placeholder (or an ImportError) to named modules only.

Megatron-Bridge imports Transformer Engine unconditionally in two modules, while every other
TE import in Bridge and Core is guarded (``HAVE_TE = False`` on ImportError). Putting a fake
``transformer_engine`` in ``sys.modules`` would make Megatron-Core believe TE exists, so the
placeholder is returned only to the listed importers, through one ``builtins.__import__`` hook.
"""

from __future__ import annotations

import builtins
import types
from dataclasses import dataclass

import torch


class Placeholder(types.ModuleType):
    """A module whose every attribute is a class that refuses to be instantiated.

    ``class X(te.Linear)`` and ``isinstance(obj, te.Linear)`` work at import time; using
    anything raises an error naming the missing package, so nothing runs silently on it.
    """

    def __init__(self, name: str, missing: str) -> None:
        super().__init__(name)
        self.__missing = missing

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        missing = self.__missing
        if attr.islower():  # a submodule such as te.pytorch or te.ops
            sub = Placeholder(f"{self.__name__}.{attr}", missing)
            setattr(self, attr, sub)
            return sub

        def refuse(*args, **kwargs):
            raise RuntimeError(
                f"{self.__name__}.{attr} is not available: {missing} is not installed "
                "(this is a Primus placeholder; install it or keep the TE-free settings)"
            )

        cls = type(attr, (torch.nn.Module,), {"__init__": refuse, "__module__": self.__name__})
        setattr(self, attr, cls)
        return cls


@dataclass(frozen=True)
class Redirect:
    """Imports of ``package`` from modules named ``importers*`` get ``placeholder``.

    ``placeholder=None`` hides the package from those importers (they see ImportError).
    """

    package: str
    importers: tuple[str, ...]
    placeholder: types.ModuleType | None
    exempt: tuple[str, ...] = ()

    def matches(self, top: str, importer: str) -> bool:
        return (
            top == self.package
            and importer.startswith(self.importers)
            and not importer.startswith(self.exempt or ("\0",))
        )


_active: list[Redirect] = []
_original_import = builtins.__import__


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and _active:
        top = name.partition(".")[0]
        importer = (globals or {}).get("__name__", "")
        for redirect in _active:
            if redirect.matches(top, importer):
                if redirect.placeholder is None:
                    raise ImportError(f"{name} is hidden from {importer} by Primus (incompatible version)")
                module = redirect.placeholder
                if fromlist:
                    for part in name.split(".")[1:]:
                        module = getattr(module, part)
                return module
    return _original_import(name, globals, locals, fromlist, level)


def install(redirect: Redirect) -> None:
    """Activate a redirect (idempotent)."""
    if redirect not in _active:
        _active.append(redirect)
    if builtins.__import__ is not _import:
        builtins.__import__ = _import


def uninstall(redirect: Redirect) -> None:
    if redirect in _active:
        _active.remove(redirect)
    if not _active and builtins.__import__ is _import:
        builtins.__import__ = _original_import


def active() -> list[Redirect]:
    return list(_active)
