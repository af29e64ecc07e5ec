"""Run systems x sequence lengths (x repeats, alternating), then compute and report the metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primus.bench.finetune_data import FinetuneInputs
from primus.bench.systems import Case, Launch, Skip, System
from primus.bench.workloads import REPO, Workload, flops_per_token

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchRequest:
    workload: Workload
    seqs: tuple[int, ...]
    systems: tuple[System, ...]
    steps: int
    warmup: int
    repeats: int
    device: str
    out_dir: Path
    timeout_s: float = 1800.0
    data: Path | None = None


def _env(extra: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "NO_VCS_VERSION": "1", **extra}


def measure_matmul(device: str, out_dir: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "primus.bench.matmul", "--device", device],
        env=_env({}),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode:
        raise RuntimeError(f"matmul measurement failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (out_dir / "matmul.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def metrics(
    result: dict[str, Any],
    req: BenchRequest,
    seq: int,
    matmul_tflops: float,
    attention_span: float | None = None,
) -> dict[str, Any]:
    """tokens/s over the steps after warm-up (fine-tuning: the real, non-padding tokens the system
    reports per step); model TFLOP/s/GPU by one formula for every system (fine-tuning: attention
    over the mean record length, LoRA without the frozen weights' gradients)."""
    steady = result["step_seconds"][req.warmup :]
    if not steady:
        raise ValueError(f"only {len(result['step_seconds'])} steps recorded; warm-up is {req.warmup}")
    w = req.workload
    if "step_tokens" in result:
        tokens_per_s = sum(result["step_tokens"][req.warmup :]) / sum(steady)
    else:
        tokens_per_s = w.tokens_per_step * len(steady) / sum(steady)
    flops = flops_per_token(w.shape, int(attention_span or seq), adapters_only=w.finetune == "lora")
    tflops = flops * tokens_per_s / 1e12
    losses = [x for x in result["losses"] if x is not None]
    return {
        "tokens_per_s": tokens_per_s,
        "step_ms_median": 1000 * statistics.median(steady),
        "model_tflops_per_gpu": tflops,
        "mfu": tflops / matmul_tflops,
        "peak_memory_gib": (result.get("peak_memory_bytes") or 0) / 2**30 or None,
        "memory_kind": result.get("memory_kind"),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_mean": statistics.fmean(losses) if losses else None,
        "losses": result["losses"],
        "dtype": result.get("dtype"),
        "validation_loss": result.get("validation_loss"),
    }


def _run_one(launch: Launch, log: Path, timeout_s: float) -> tuple[dict | None, str | None]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        env_text = " ".join(f"{k}={v}" for k, v in launch.env.items())
        out.write(f"$ {env_text + ' ' if env_text else ''}{' '.join(launch.command)}\n")
        out.flush()
        try:
            proc = subprocess.run(
                launch.command,
                env=_env(launch.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout_s:.0f} s (log: {log})"
    if proc.returncode:
        return None, f"exit code {proc.returncode} (log: {log})"
    try:
        return launch.read_result(), None
    except (OSError, ValueError, KeyError) as exc:
        return None, f"no readable result ({exc}; log: {log})"


def synthetic_data(req: BenchRequest) -> Path:
    """On a CPU without ``--data``: one synthetic dataset all systems read (instead of Megatron's
    mock data for the Bridge systems and uniform random tokens for the HF loop)."""
    from primus.bench.data import write_synthetic

    longest = max(req.seqs)
    tokens = max(req.steps * req.workload.tokens_per_step, 64 * longest, 2**16)
    return write_synthetic(req.out_dir / "synthetic" / "tokens", req.workload.shape.vocab, tokens)


def finetune_inputs(req: BenchRequest, seq: int) -> FinetuneInputs:
    """The model directory and records of a fine-tuning workload, built in a subprocess."""
    from dataclasses import asdict

    w = req.workload
    assert w.records is not None
    root = req.out_dir / "finetune_inputs"
    root.mkdir(parents=True, exist_ok=True)
    (root / "hf_config.json").write_text(json.dumps(w.hf_config(seq), indent=1))
    (root / "spec.json").write_text(json.dumps(asdict(w.records)))
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "primus.bench.finetune_data",
            "--config",
            str(root / "hf_config.json"),
            "--spec",
            str(root / "spec.json"),
            "--out",
            str(root),
        ],  # fmt: skip
        env=_env({}),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode:
        raise RuntimeError(f"building the fine-tuning inputs failed:\n{proc.stderr[-3000:]}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    logger.info("fine-tuning inputs: %s (%.0f s)", stats, time.perf_counter() - start)
    return FinetuneInputs(root / "hf", root / "data", stats)


def run_bench(req: BenchRequest) -> dict[str, Any]:
    req.out_dir.mkdir(parents=True, exist_ok=True)
    data_text = str(req.data) if req.data else "synthetic (Megatron mock data; random tokens in the HF loop)"
    inputs = None
    if req.workload.finetune:
        inputs = finetune_inputs(req, max(req.seqs))
        st = inputs.stats
        data_text = (
            f"{st['records']} synthetic chat records ({st['tokens_mean']:.0f} tokens mean, "
            f"{st['tokens_min']}-{st['tokens_max']}), {st['validation_records']} held out for validation, "
            f"packed into sequences of the seq length, read by all; random-weight model, "
            f"tokenizer of {st['tokenizer_size']} ids"
        )
    elif req.device == "cpu" and req.data is None:
        req = dataclasses.replace(req, data=synthetic_data(req))
        data_text = f"synthetic counting sequences (Megatron's mock-data pattern) in {req.data}, read by all"
    matmul = measure_matmul(req.device, req.out_dir)
    logger.info(
        "matmul reference: %.1f TFLOP/s (%s %d^3 on %s)",
        matmul["tflops"],
        matmul["dtype"],
        matmul["n"],
        matmul["device"],
    )
    rows: list[dict[str, Any]] = []
    for seq in req.seqs:
        mbs, gbs = req.workload.batch(seq)
        runs: dict[str, list[dict]] = {s.name: [] for s in req.systems}
        notes: dict[str, str] = {}
        for rep in range(req.repeats):  # alternate systems so drift hits all of them alike
            for system in req.systems:
                if system.name in notes:
                    continue
                case = Case(
                    req.workload,
                    seq,
                    req.steps,
                    req.device,
                    req.out_dir / f"seq{seq}" / system.name / f"r{rep}",
                    req.data,
                    inputs,
                )
                launch = system.launch(case)
                if isinstance(launch, Skip):
                    notes[system.name] = f"skipped: {launch.reason}"
                    logger.info("seq %d %s: %s", seq, system.name, notes[system.name])
                    continue
                start = time.perf_counter()
                result, error = _run_one(launch, case.out_dir / "log.txt", req.timeout_s)
                if error:
                    notes[system.name] = f"failed: {error}"
                    logger.error("seq %d %s: %s", seq, system.name, notes[system.name])
                    continue
                span = inputs.stats["tokens_mean"] if inputs else None
                m = metrics(result, req, seq, matmul["tflops"], span)
                runs[system.name].append(m)
                logger.info(
                    "seq %d %s run %d: %s tokens/s, %.3g TFLOP/s, %.0f s",
                    seq,
                    system.name,
                    rep + 1,
                    f"{m['tokens_per_s']:,.0f}",
                    m["model_tflops_per_gpu"],
                    time.perf_counter() - start,
                )
        for system in req.systems:
            rs = runs[system.name]
            row: dict[str, Any] = {
                "system": system.name,
                "description": system.description,
                "seq": seq,
                "micro_batch": mbs,
                "global_batch": gbs,
            }
            if not rs:
                rows.append({**row, "status": notes.get(system.name, "no result")})
                continue
            tps = [r["tokens_per_s"] for r in rs]
            best = rs[0]
            row.update({k: v for k, v in best.items() if k.startswith(("loss", "memory", "dtype"))})
            validation = [r["validation_loss"] for r in rs if r.get("validation_loss") is not None]
            row.update(
                status="ok",
                tokens_per_s=statistics.median(tps),  # medians over the runs, with min-max
                tokens_per_s_min=min(tps),
                tokens_per_s_max=max(tps),
                tokens_per_s_runs=tps,
                model_tflops_per_gpu=statistics.median(r["model_tflops_per_gpu"] for r in rs),
                mfu=statistics.median(r["mfu"] for r in rs),
                step_ms_median=statistics.median(r["step_ms_median"] for r in rs),
                peak_memory_gib=max((r["peak_memory_gib"] or 0) for r in rs) or None,
                validation_loss=statistics.median(validation) if validation else None,
                validation_loss_runs=validation,
                loss_curves=[r["losses"] for r in rs],
            )
            rows.append(row)
        reference = next((r for r in rows if r["seq"] == seq and r["status"] == "ok"), None)
        for r in rows:
            if r["seq"] == seq and r["status"] == "ok" and reference:
                r["ratio_to_first"] = r["tokens_per_s"] / reference["tokens_per_s"]
                r["ratio_reference"] = reference["system"]
    report = {
        "workload": req.workload.to_dict(),
        "device": req.device,
        "matmul": matmul,
        "steps": req.steps,
        "warmup": req.warmup,
        "repeats": req.repeats,
        "flop_formula": "6*N_matmul + 12*layers*hidden*seq per token (PaLM, App. B)"
        + ("; fine-tuning: seq = the mean record length, LoRA 4*N_matmul" if inputs else ""),
        "finetune_inputs": inputs.stats if inputs else None,
        "data": data_text,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rows": rows,
    }
    (req.out_dir / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    (req.out_dir / "bench.md").write_text(table(report) + "\n")
    return report


def table(report: dict[str, Any]) -> str:
    """bench.md: on a CPU the FLOP columns are per process and the matmul reference is fp32."""
    m = report["matmul"]
    reference = f"{m['tflops']:.4g} TFLOP/s ({m['dtype']} {m['n']}^3 matmul, measured in this run)"
    if report["device"] == "cpu":
        flops, share = "model TFLOP/s", "of matmul"
        where = f"CPU (one process, no GPU); 'of matmul' is model FLOP/s over {reference}"
    else:
        flops, share = "model TFLOP/s/GPU", "MFU"
        where = f"{m['device']}; MFU against {reference}"
    finetune = bool(report["workload"].get("finetune"))
    tokens = "real tokens/s" if finetune else "tokens/s"
    lines = [
        f"workload {report['workload']['name']} on {where}; {report['steps']} steps, first "
        f"{report['warmup']} dropped; {report['repeats']} run(s) each, systems alternating, "
        "medians (min-max); "
        f"data: {report['data']}",
        "",
        f"| system | seq | dtype | {tokens} | {flops} | {share} | peak memory GiB | loss first -> last "
        f"| {'validation loss | ' if finetune else ''}vs first |",
        f"|---|---|---|---|---|---|---|---|{'---|' if finetune else ''}---|",
    ]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['system']} | {r['seq']} | | {r['status']} | | | | |{' |' if finetune else ''} |"
            )
            continue
        mem = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") else "-"
        loss = f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}" if r.get("loss_first") is not None else "-"
        spread = ""
        if len(r.get("tokens_per_s_runs", [])) > 1:
            spread = f" ({r['tokens_per_s_min']:,.0f}-{r['tokens_per_s_max']:,.0f})"
        validation = ""
        if finetune:
            v = r.get("validation_loss")
            validation = f"{v:.4f} | " if v is not None else "- | "
        lines.append(
            f"| {r['system']} | {r['seq']} | {r.get('dtype') or '-'} | {r['tokens_per_s']:,.0f}{spread} | "
            f"{r['model_tflops_per_gpu']:.3g} | {100 * r['mfu']:.1f}% | {mem} | {loss} | {validation}"
            f"{r['ratio_to_first']:.3f}x |"
        )
    return "\n".join(lines)
