"""Trace the Adam step counters of Megatron's DistributedOptimizer through save and resume (GPU).

    python benchmarks/resume_probe.py [--fused-distributed] -- <primus train args>

Runs ``primus train`` in this process with the optimizer's ``state_dict`` / ``load_state_dict``
instrumented: each call prints (to stderr, prefixed ``[probe]``) how many parameters hold state,
the distinct step values, their devices and how many distinct step tensors there are.
``--fused-distributed`` lets the ``fused_adam`` patch switch the distributed optimizer's inner
AdamW too (Primus skips it by default), to find out why that failed on a resume.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from primus.backends.megatron_bridge.patches import fast_optimizer  # noqa: E402
from primus.cli.main import main as primus_main  # noqa: E402


def describe(opt, where: str) -> None:
    steps = [s["step"] for s in opt.state.values() if "step" in s]
    values = sorted({float(s) for s in steps})
    devices = sorted({str(getattr(s, "device", "python")) for s in steps})
    distinct = len({id(s) for s in steps})
    fused = sorted({str(g.get("fused")) for g in opt.param_groups})
    moments = {
        key: sum(float(s[key].float().norm()) ** 2 for s in opt.state.values() if key in s) ** 0.5
        for key in ("exp_avg", "exp_avg_sq")
    }
    params = sum(float(p.float().norm()) ** 2 for g in opt.param_groups for p in g["params"]) ** 0.5
    print(
        f"[probe] {where}: {len(opt.state)} states, {len(steps)} steps, values {values[:5]}{'...' if len(values) > 5 else ''}"
        f", devices {devices}, distinct step tensors {distinct}, fused {fused}"
        f", |exp_avg| {moments['exp_avg']:.6e} |exp_avg_sq| {moments['exp_avg_sq']:.6e} |main params| {params:.6e}",
        file=sys.stderr,
        flush=True,
    )


def instrument(fused_distributed: bool) -> None:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for name in ("state_dict", "load_state_dict"):
        original = getattr(DistributedOptimizer, name)

        def traced(self, *args, _original=original, _name=name, **kwargs):
            describe(self.optimizer, f"before DistributedOptimizer.{_name}")
            try:
                return _original(self, *args, **kwargs)
            finally:
                describe(self.optimizer, f"after DistributedOptimizer.{_name}")

        setattr(DistributedOptimizer, name, functools.wraps(original)(traced))
    original_step = DistributedOptimizer.step_with_ready_grads

    def step(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        describe(self.optimizer, "after step")
        return result

    DistributedOptimizer.step_with_ready_grads = step
    if fused_distributed:
        fast_optimizer._torch_optimizers = lambda result: (
            [getattr(o, "optimizer", o) for o in (getattr(result, "chained_optimizers", None) or [result])],
            0,
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fused-distributed", action="store_true")
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    a = p.parse_args()
    install = fast_optimizer.install_fused_adam

    def install_and_instrument() -> None:
        install()
        instrument(a.fused_distributed)

    fast_optimizer.install_fused_adam = install_and_instrument
    args = a.train_args[1:] if a.train_args[:1] == ["--"] else a.train_args
    sys.exit(primus_main(["train", *args]))


if __name__ == "__main__":
    main()
