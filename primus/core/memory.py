"""Peak memory of this process, for run summaries and benchmarks."""

from __future__ import annotations

import resource
import sys
from typing import Any


def peak_memory(cuda: bool) -> dict[str, Any]:
    """The CUDA caching allocator's peak on a GPU, the peak resident set size on a CPU."""
    if cuda:
        import torch

        return {
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated()),
            "memory_kind": "cuda_max_allocated",
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {
        "peak_memory_bytes": int(rss * (1 if sys.platform == "darwin" else 1024)),
        "memory_kind": "cpu_max_rss",
    }
