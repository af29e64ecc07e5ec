"""Count host-device synchronisations per training iteration and where they come from.

Runs ``primus.cli.train`` in this process with ``torch.cuda.set_sync_debug_mode("warn")``:
every synchronising CUDA call (``.item()``, ``bool(tensor)``, blocking copies) raises a warning,
which is counted by the Python stack that caused it. Prints the stacks, most frequent first.

    python benchmarks/sync_probe.py --recipe llama32_1b train.train_iters=12 ...
"""

from __future__ import annotations

import atexit
import collections
import runpy
import sys
import traceback
import warnings

import torch

counts: collections.Counter = collections.Counter()


def _record(message, category, filename, lineno, file=None, line=None) -> None:
    if "synchroniz" not in str(message):
        return
    frames = [
        f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}"
        for f in traceback.extract_stack()[:-1]
        if "/torch/" not in f.filename and "warnings.py" not in f.filename and "sync_probe" not in f.filename
    ]
    counts[tuple(frames[-5:])] += 1


def _dump() -> None:
    print(f"\n== synchronising calls: {sum(counts.values())} in all ==", flush=True)
    for stack, n in counts.most_common(25):
        print(f"{n:6d}x")
        for frame in stack:
            print(f"         {frame}")
    sys.stdout.flush()


if __name__ == "__main__":
    warnings.showwarning = _record
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    atexit.register(_dump)
    sys.argv = ["primus.cli.train", *sys.argv[1:]]
    runpy.run_module("primus.cli.train", run_name="__main__", alter_sys=True)
