"""The result file every benchmark system writes, and reading Megatron-Bridge runs into it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def write_result(path: Path, *, step_seconds: list[float], losses: list[float | None], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step_seconds": step_seconds, "losses": losses, **extra}, indent=1) + "\n")


def result_from_run_dir(run_dir: Path) -> dict[str, Any]:
    """A `primus train` / Bridge run directory (metrics.jsonl + summary.json) as a result."""
    records = [
        json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "step_seconds": [r["seconds"] for r in records],
        "losses": [r["loss"] for r in records],
        "peak_memory_bytes": summary.get("peak_memory_bytes"),
        "memory_kind": summary.get("memory_kind"),
        "validation_loss": summary.get("validation_loss"),
        "dtype": training_dtype(run_dir / "config.yaml"),
    }


def training_dtype(config_yaml: Path) -> str | None:
    """bf16 / fp16 / fp32 from a run's resolved config (None when the run wrote none)."""
    if not config_yaml.is_file():
        return None
    model = (yaml.safe_load(config_yaml.read_text()) or {}).get("model") or {}
    if model.get("bf16"):
        return "bf16"
    if model.get("fp16"):
        return "fp16"
    return {"float32": "fp32"}.get(model.get("params_dtype"), model.get("params_dtype"))


def packed_fill(run_dir: Path, seq: int) -> float:
    """Real (non-padding) tokens per packed position of a fine-tuning run's training data, from
    Bridge's packed file (``sft_data/packed/*/training_SEQ``): a record of n tokens feeds n - 1 to
    the model (inputs ``ids[:-1]``, labels ``ids[1:]``); over rows x ``seq`` positions."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted((run_dir / "sft_data" / "packed").glob(f"*/training_{seq}.idx.parquet"))
    if not files:
        raise ValueError(f"no packed training data (training_{seq}.idx.parquet) under {run_dir / 'sft_data'}")
    table = pq.read_table(files[0], columns=["input_ids", "seq_start_id"])
    tokens = pc.sum(pc.list_value_length(table.column("input_ids"))).as_py()
    records = pc.sum(pc.list_value_length(table.column("seq_start_id"))).as_py()
    return float(tokens - records) / (table.num_rows * seq)
