"""Summarise a torch.profiler chrome trace: where the GPU time of a training step goes.

Megatron-Bridge writes the trace with ``profiling.use_pytorch_profiler=true`` to
``<run_dir>/torch_profile/rank-0.json.gz``. Each GPU kernel is attributed to the CPU op that
launched it (innermost and outermost enclosing ``cpu_op`` on the launching thread), so
elementwise kernels show whether they come from RMSNorm, RoPE, SwiGLU, the loss or the optimizer.

    python benchmarks/profile_summary.py TRACE.json.gz --steps 2 [--top 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def attribute(events: list[dict]) -> dict[int, tuple[str, str]]:
    """correlation id -> (outermost, innermost) CPU op enclosing the kernel's launch."""
    per_tid: dict[int, list[tuple[float, int, float, str, int | None]]] = defaultdict(list)
    for e in events:
        cat = e.get("cat")
        if cat == "cpu_op":
            per_tid[e["tid"]].append((e["ts"], 0, -e.get("dur", 0), e["name"], None))
        elif cat in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {}):
            per_tid[e["tid"]].append((e["ts"], 1, 0.0, e["name"], e["args"]["correlation"]))
    owner: dict[int, tuple[str, str]] = {}
    for items in per_tid.values():
        items.sort()
        stack: list[tuple[float, str]] = []  # (end, name)
        for ts, kind, neg_dur, name, corr in items:
            while stack and stack[-1][0] <= ts:
                stack.pop()
            if kind == 0:
                stack.append((ts - neg_dur, name))
            elif stack:
                owner[corr] = (stack[0][1], stack[-1][1])
            else:
                owner[corr] = ("<no op>", "<no op>")
    return owner


def idle_gaps(events: list[dict], threshold_us: float = 20.0) -> list[dict]:
    """GPU idle intervals (no kernel, memcpy or memset running) longer than ``threshold_us``.

    Each gap names the kernels around it and the CPU ops running on every thread when it began.
    """
    gpu = sorted(
        (e["ts"], e["ts"] + e["dur"], e["name"])
        for e in events
        if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    )
    cpu_ops = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"]) for e in events if e.get("cat") == "cpu_op"
    )
    runtime = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"]) for e in events if e.get("cat") == "cuda_runtime"
    )
    gaps = []
    end, prev = (gpu[0][1], gpu[0][2]) if gpu else (0.0, "")
    for ts, te, name in gpu[1:]:
        if ts - end > threshold_us:
            gaps.append({"start": end, "us": ts - end, "before": prev[:60], "after": name[:60]})
        if te > end:
            end, prev = te, name
    for g in gaps:  # what the host was doing while the GPU waited
        mid = g["start"] + min(g["us"], 10.0)
        g["cpu_ops"] = sorted({n[:70] for s, e, n in cpu_ops if s <= mid <= e and s > g["start"] - 5e5})[:6]
        g["runtime"] = sorted({n for s, e, n in runtime if s <= mid <= e})
    return gaps


def summarise(events: list[dict], steps: int, top: int) -> dict:
    owner = attribute(events)
    gaps = idle_gaps(events)
    by_runtime: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "cuda_runtime":
            by_runtime[e["name"]] += e.get("dur", 0)
    kernels = [e for e in events if e.get("cat") == "kernel"]
    total = sum(e["dur"] for e in kernels)
    span = (max(e["ts"] + e["dur"] for e in kernels) - min(e["ts"] for e in kernels)) if kernels else 0
    by_kernel: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], float] = defaultdict(float)
    by_inner: dict[str, float] = defaultdict(float)
    for e in kernels:
        outer, inner = owner.get(e.get("args", {}).get("correlation"), ("<unknown>", "<unknown>"))
        by_kernel[e["name"][:120]] += e["dur"]
        by_op[(outer[:90], inner[:60])] += e["dur"]
        by_inner[inner[:60]] += e["dur"]

    def rows(d: dict, n: int) -> list[dict]:
        return [
            {"name": k, "ms_per_step": v / 1000 / steps, "share": v / total if total else 0.0}
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]
        ]

    return {
        "steps": steps,
        "idle_ms_per_step": sum(g["us"] for g in gaps) / 1000 / steps,
        "idle_gaps_per_step": len(gaps) / steps,
        "largest_gaps": sorted(gaps, key=lambda g: -g["us"])[:top],
        "runtime_calls": rows(by_runtime, 12),
        "gpu_busy_ms_per_step": total / 1000 / steps,
        "kernel_span_ms_per_step": span / 1000 / steps,
        "kernels": rows(by_kernel, top),
        "inner_ops": rows(by_inner, top),
        "ops": [
            {"outer": k[0], "inner": k[1], "ms_per_step": v / 1000 / steps, "share": v / total}
            for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("trace", type=Path)
    p.add_argument("--steps", type=int, default=1, help="profiled steps in the trace")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    s = summarise(load(a.trace), a.steps, a.top)
    print(
        f"GPU busy {s['gpu_busy_ms_per_step']:.1f} ms/step of a {s['kernel_span_ms_per_step']:.1f} ms kernel span"
    )
    print(f"GPU idle {s['idle_ms_per_step']:.1f} ms/step in {s['idle_gaps_per_step']:.0f} gaps > 20 us")
    print("\n== largest idle gaps ==")
    for g in s["largest_gaps"]:
        print(f"{g['us'] / 1000:7.2f} ms  after {g['before']!r} before {g['after']!r}")
        print(f"           host: {' / '.join(g['cpu_ops'])}  runtime: {', '.join(g['runtime'])}")
    print("\n== CUDA runtime calls (host time) ==")
    for r in s["runtime_calls"]:
        print(f"{r['ms_per_step']:8.2f} ms  {r['name']}")
    for title, key in (("kernels", "kernels"), ("innermost ops", "inner_ops")):
        print(f"\n== {title} ==")
        for r in s[key]:
            print(f"{r['ms_per_step']:8.2f} ms {100 * r['share']:5.1f}%  {r['name']}")
    print("\n== outer / inner ops ==")
    for r in s["ops"]:
        print(f"{r['ms_per_step']:8.2f} ms {100 * r['share']:5.1f}%  {r['outer']}  |  {r['inner']}")
    if a.json:
        a.json.write_text(json.dumps(s, indent=2))


if __name__ == "__main__":
    main()
