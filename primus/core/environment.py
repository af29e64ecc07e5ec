"""Facts about the machine that patches and preflight checks decide on.

Gathered once per run and passed around as data, so tests can fake any environment
(TE present, CUDA absent...) without touching the real one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def module_importable(name: str) -> bool:
    """Whether ``import name`` can find a real module (not an empty namespace dir)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and (spec.origin is not None or bool(spec.submodule_search_locations))


@dataclass(frozen=True)
class EnvFacts:
    """What this process can use. ``device`` is the resolved training device."""

    has_cuda: bool
    cuda_device_count: int = 0
    has_te: bool = False
    device: str = "cpu"
    versions: dict[str, str | None] = field(default_factory=dict)
    #: backend-specific facts, probed lazily by patch conditions (tests may preset them)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"


_TRACKED = (
    "torch",
    "megatron-core",
    "megatron-bridge",
    "transformers",
    "transformer-engine",
    "nvidia-resiliency-ext",
)


def detect(requested_device: str = "auto") -> EnvFacts:
    """Probe the real environment. Imports torch (not Megatron)."""
    import torch

    has_cuda = torch.cuda.is_available()
    device = requested_device if requested_device != "auto" else ("cuda" if has_cuda else "cpu")
    return EnvFacts(
        has_cuda=has_cuda,
        cuda_device_count=torch.cuda.device_count() if has_cuda else 0,
        has_te=module_importable("transformer_engine"),
        device=device,
        versions={name: package_version(name) for name in _TRACKED},
    )
