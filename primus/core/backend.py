"""Backends: a registry of lazily imported adapters, keyed by a stable name.

Registering a backend costs nothing: a :class:`BackendSpec` names the module and class of its
adapter, which is imported only when the backend is asked for (Megatron-Bridge takes ~10 s).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from primus.core.errors import PrimusUserError, did_you_mean

if TYPE_CHECKING:
    from primus.core.capabilities import DataPreparation, HFConversion, Inference, RecipeCatalog
    from primus.core.run_context import RunContext
    from primus.core.trainer import BaseTrainer


@dataclass(frozen=True)
class BackendSpec:
    """What the registry knows about a backend before importing it."""

    name: str
    module: str
    adapter_class: str
    description: str
    #: top-level config sections the backend owns (checked without importing it)
    sections: tuple[str, ...] = ()
    #: module whose import registers the backend's patches (must be cheap to import)
    patches_module: str | None = None
    #: YAML a run starts from when it names no config, recipe or HF model (a tiny model)
    default_config: str | None = None


class BackendAdapter(ABC):
    """The contract between the Primus runtime and one training framework."""

    name: str = ""

    @abstractmethod
    def prepare_environment(self, ctx: RunContext) -> None:
        """Make the process ready for the framework (runs the ``setup`` patches)."""

    @abstractmethod
    def build_config(self, ctx: RunContext) -> Any:
        """Turn ``ctx.config`` into the framework's native config (runs ``build_args`` patches)."""

    @abstractmethod
    def create_trainer(self, ctx: RunContext, native_config: Any) -> BaseTrainer:
        """The trainer that will run the lifecycle for this config."""

    def describe(self, ctx: RunContext, native_config: Any) -> str:
        """Human-readable summary of the built config (``--dry-run``); backends may refine it."""
        return ctx.config.to_yaml()

    # -- capabilities besides training (primus.core.capabilities); the default: not offered --
    def recipes(self) -> RecipeCatalog:
        raise self._unsupported("recipes", "primus recipes")

    def conversion(self) -> HFConversion:
        raise self._unsupported("HuggingFace conversion", "primus convert")

    def data_preparation(self) -> DataPreparation:
        raise self._unsupported("data preparation", "primus data prepare")

    def inference(self) -> Inference:
        raise self._unsupported("inference", "primus generate / primus eval")

    def _unsupported(self, what: str, command: str) -> PrimusUserError:
        return PrimusUserError(
            f"the {self.name} backend offers no {what} ({command})",
            key="framework",
            hint="see `primus backends list`",
        )


class BackendRegistry:
    """Name -> :class:`BackendSpec`; duplicates raise, failed lookups list what exists."""

    def __init__(self) -> None:
        self._specs: dict[str, BackendSpec] = {}
        self._adapters: dict[str, BackendAdapter] = {}

    def register(self, spec: BackendSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(
                f"backend {spec.name!r} is already registered (by {self._specs[spec.name].module})"
            )
        self._specs[spec.name] = spec

    def spec(self, name: str, source: str | None = None) -> BackendSpec:
        if name not in self._specs:
            raise PrimusUserError(
                f"unknown framework {name!r}",
                key="framework",
                source=source,
                hint=did_you_mean(name, self._specs) + " (see `primus backends list`)",
            )
        return self._specs[name]

    def get(self, name: str) -> BackendAdapter:
        """The adapter instance of ``name``, importing its module on first use."""
        spec = self.spec(name)
        if name not in self._adapters:
            module = importlib.import_module(spec.module)
            adapter_cls = getattr(module, spec.adapter_class)
            self._adapters[name] = adapter_cls()
        return self._adapters[name]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[BackendSpec]:
        return [self._specs[n] for n in self.names()]

    def clear(self) -> None:
        """Forget every backend (tests only)."""
        self._specs.clear()
        self._adapters.clear()


#: The process-wide registry; backends register into it from their package ``__init__``.
BACKENDS = BackendRegistry()
