"""The matmul throughput MFU is measured against: a large GEMM timed on this device, now.

bf16 8192^3 on a GPU (the dtype the models train in), fp32 1024^3 on a CPU. Prints one JSON line.

    python -m primus.bench.matmul --device cuda
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SHAPES = {"cuda": (8192, torch.bfloat16, 50), "cpu": (1024, torch.float32, 10)}


def measure(device: str) -> dict:
    n, dtype, reps = SHAPES[device]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(3):  # best of three timed bursts, after a warm-up
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / reps)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {
        "device": name,
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "tflops": 2 * n**3 / best / 1e12,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=tuple(SHAPES), default="cuda")
    print(json.dumps(measure(p.parse_args(argv).device)), flush=True)


if __name__ == "__main__":
    main()
