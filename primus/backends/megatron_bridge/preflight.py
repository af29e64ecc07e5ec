"""Checks that run before any GPU time is spent; every problem is reported at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.resume import TRACKER, latest_checkpoint, shape_mismatches
from primus.core.environment import EnvFacts
from primus.core.errors import ProblemCollector


def _precision_wants_low_bits(container: Any) -> str | None:
    mp = container.mixed_precision
    names = [mp] if isinstance(mp, str) else []
    if mp is not None and not isinstance(mp, str):
        names += [str(getattr(mp, "fp8", None) or ""), str(getattr(mp, "fp4", None) or "")]
    model = container.model
    names += [str(getattr(model, "fp8", None) or ""), str(getattr(model, "fp4", None) or "")]
    for name in names:
        lowered = name.lower()
        if "fp8" in lowered or "fp4" in lowered or lowered in ("e4m3", "hybrid", "nvfp4", "mxfp4"):
            return name
    return None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_checkpoint_shape(container: Any, load: str, view, problems: ProblemCollector) -> None:
    """The model as it will be built must have the shapes the checkpoint was saved with."""
    saved = latest_checkpoint(load)
    if saved is None:
        return
    iters = container.train.train_iters
    if iters and saved.iteration >= iters:
        problems.add(
            f"the checkpoint in {load} is at iteration {saved.iteration} and train.train_iters is {iters}: "
            "nothing left to train",
            key="train.train_iters",
            source=view.source_of("train.train_iters"),
            hint=f"to train longer, raise it (e.g. train.train_iters={2 * saved.iteration})",
        )
    for field, theirs, ours in shape_mismatches(container, saved):
        problems.add(
            f"the checkpoint in {load} (iteration {saved.iteration}) has {field}={theirs}, this config {ours}",
            key=f"model.{field}",
            source=view.source_of(f"model.{field}"),
            hint="resume with the model shape the checkpoint was saved with, or start a new run_dir",
        )


def _check_directories(container: Any, view, problems: ProblemCollector) -> None:
    """Output directories must be writable; a resume must have a checkpoint to resume from."""
    for key, value in (
        ("run_dir", view.get("run_dir", None)),
        ("checkpoint.save", container.checkpoint.save),
        ("logger.tensorboard_dir", container.logger.tensorboard_dir),
    ):
        if not value:
            continue
        existing = _nearest_existing(Path(value).absolute())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problems.add(
                f"{value} is not writable ({existing} is not a writable directory)",
                key=key,
                source=view.source_of(key),
                hint="choose a directory you can write to",
            )
    _check_export_dir(view, problems)
    load = container.checkpoint.load
    if load and not (Path(load) / TRACKER).is_file():
        key = "resume" if view.get("resume", False) else "checkpoint.load"
        problems.add(
            f"nothing to resume: {load} has no checkpoint ({TRACKER} missing)",
            key=key,
            source=view.source_of(key),
            hint="drop --resume to start from scratch, or point checkpoint.load at a checkpoint directory",
        )
    elif load:
        _check_checkpoint_shape(container, load, view, problems)


def _check_export_dir(view, problems: ProblemCollector) -> None:
    """--convert_to_hf into a directory of the user's that holds files: refused before training.

    An export inside the run directory is the run's own: a resumed run moves the earlier one aside.
    """
    export = view.get("hf_export_dir", None)
    if not view.get("convert_to_hf", False) or not export:
        return
    out, run_dir = Path(export).absolute(), Path(str(view.get("run_dir"))).absolute()
    if out.is_relative_to(run_dir) or not out.is_dir() or not any(out.iterdir()):
        return
    problems.add(
        f"{export} exists and holds files; the export would overwrite them",
        key="hf_export_dir",
        source=view.source_of("hf_export_dir"),
        hint="choose a new directory, or move that one away",
    )


def _same_dir(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def check_earlier_run(user) -> ProblemCollector:
    """A run that does not resume must not write over an earlier run's checkpoints or metrics.

    Needs only the user's config (Primus puts checkpoints in ``run_dir/checkpoints`` unless
    ``checkpoint.save`` says otherwise), so it runs before Megatron is imported: the answer
    comes in a second, not after half a minute of imports.
    """
    problems = ProblemCollector()
    run_dir = user.get("run_dir", None)
    checkpoint = user.get("checkpoint", None)
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    save = checkpoint.get("save") or (str(Path(run_dir) / "checkpoints") if run_dir else None)
    load = checkpoint.get("load")
    resuming = bool(user.get("resume", False)) or _same_dir(load, save)
    if user.get("start_over", False):
        if resuming:
            problems.add(
                "start_over moves the earlier run aside, resume continues it: choose one",
                key="start_over",
                source=user.source_of("start_over"),
            )
        return problems
    if resuming:
        return problems
    found = None
    if save and (Path(save) / TRACKER).is_file():
        last = (Path(save) / TRACKER).read_text().strip()
        found = f"has checkpoints up to iteration {last} (in {save})"
    elif run_dir and (Path(run_dir) / "metrics.jsonl").is_file():
        found = "holds an earlier run (metrics.jsonl) that saved no checkpoint"
    if found:
        problems.add(
            f"run dir {run_dir} {found}",
            key="run_dir",
            source=user.source_of("run_dir"),
            hint="add --resume to continue it, choose another --run_dir, or add --start_over "
            "to move it aside (nothing is deleted) and start again"
            if "checkpoints" in found
            else "choose another --run_dir, or add --start_over to move it aside (nothing is deleted)",
        )
    return problems


#: model sizes that must be positive integers for a model to exist at all
POSITIVE_MODEL_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "seq_length")


def _check_geometry(container: Any, src, problems: ProblemCollector) -> None:
    """Zero or missing sizes build no model (Megatron divides by them much later)."""
    model = container.model
    for field in POSITIVE_MODEL_FIELDS:
        value = getattr(model, field, None)
        if field == "ffn_hidden_size" and value is None:
            continue  # Megatron derives it (4 x hidden_size)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            problems.add(
                f"model.{field} is {value!r}: a model needs num_layers, hidden_size, "
                "num_attention_heads and seq_length > 0",
                key=f"model.{field}",
                source=src(f"model.{field}"),
                hint="start from a recipe (--recipe llama32_1b), `extends: tiny_llama.yaml`, "
                f"or set model.{field}",
            )
    for key in ("train.train_iters", "train.global_batch_size", "train.micro_batch_size"):
        section, name = key.split(".")
        value = getattr(getattr(container, section), name, None)
        if key == "train.train_iters" and value is None and container.train.train_samples:
            continue
        if value is not None and (not isinstance(value, int) or value <= 0):
            problems.add(f"{key} is {value!r}: it must be a positive integer", key=key, source=src(key))


def _check_splits(container: Any, src, problems: ProblemCollector) -> None:
    """Every split that is on must receive sequences, or Megatron loops forever building it."""
    from primus.backends.megatron_bridge import data_splits

    blend, split = getattr(container.dataset, "blend", None), getattr(container.dataset, "split", None)
    if blend is None or not split:
        return
    prefixes = [p for p in blend[0] if Path(p + ".idx").is_file()]
    if not prefixes:
        return
    counts = data_splits.measure(prefixes, split)
    if not counts:
        return
    samples = data_splits.samples_per_split(container)
    smallest = min(c.total for c in counts)
    working = data_splits.working_split(split, smallest)
    for c in counts:
        for index in c.empty_splits():
            if working:
                hint = f"set dataset.split={working} (document counts), or validation.eval_iters=0 to train on all of it"
            else:
                hint = "add data, or set validation.eval_iters=0 to train on all of it"
            problems.add(
                data_splits.describe_empty(c, index, samples[index], container.dataset.seq_length),
                key="dataset.split",
                source=src("dataset.split"),
                hint=hint,
            )


def check_requested(container: Any, built_view, env: EnvFacts) -> ProblemCollector:
    """Checks on what the user asked for, before build_args patches adapt it to the machine."""
    problems = ProblemCollector()

    def src(path: str) -> str | None:
        return built_view.source_of(path)

    low_bits = _precision_wants_low_bits(container)
    if low_bits and not env.has_te:
        problems.add(
            f"FP8/FP4 training ({low_bits!r}) needs Transformer Engine, which is not installed",
            key="mixed_precision",
            source=src("mixed_precision") or src("model.fp8"),
            hint="use mixed_precision: bf16_mixed, or run in a container with Transformer Engine",
        )
    return problems


def check(container: Any, built_view, env: EnvFacts, world_size: int) -> ProblemCollector:
    """Problems with the final config for this environment (nothing is raised here)."""
    problems = ProblemCollector()
    model = container.model

    def src(path: str) -> str | None:
        return built_view.source_of(path)

    _check_geometry(container, src, problems)
    tp = model.tensor_model_parallel_size or 1
    pp = model.pipeline_model_parallel_size or 1
    cp = model.context_parallel_size or 1
    vp = getattr(model, "virtual_pipeline_model_parallel_size", None) or 1
    heads, groups = model.num_attention_heads, model.num_query_groups or model.num_attention_heads
    hidden = model.hidden_size
    if heads and groups and heads % groups:
        problems.add(
            f"num_attention_heads={heads} is not divisible by num_query_groups={groups}",
            key="model.num_query_groups",
            source=src("model.num_query_groups"),
            hint="GQA needs heads to be a multiple of the query groups",
        )
    if heads and hidden and hidden % heads and str(src("model.kv_channels")).startswith("derived"):
        problems.add(
            f"hidden_size={hidden} is not divisible by num_attention_heads={heads}",
            key="model.num_attention_heads",
            source=src("model.num_attention_heads"),
            hint="or set model.kv_channels explicitly",
        )
    if heads and heads % tp:
        problems.add(
            f"num_attention_heads={heads} is not divisible by tensor_model_parallel_size={tp}",
            key="model.tensor_model_parallel_size",
            source=src("model.tensor_model_parallel_size"),
            hint="choose a TP size that divides the number of heads",
        )
    elif groups and groups % tp:
        problems.add(
            f"num_query_groups={groups} is not divisible by tensor_model_parallel_size={tp}",
            key="model.tensor_model_parallel_size",
            source=src("model.tensor_model_parallel_size"),
        )
    if (
        model.num_layers
        and model.num_layers % (pp * vp)
        and not getattr(model, "account_for_embedding_in_pipeline_split", False)
    ):
        problems.add(
            f"num_layers={model.num_layers} is not divisible by pipeline size {pp} x virtual stages {vp}",
            key="model.pipeline_model_parallel_size",
            source=src("model.pipeline_model_parallel_size"),
        )
    if world_size % (tp * pp * cp):
        problems.add(
            f"world size {world_size} is not divisible by TP {tp} x PP {pp} x CP {cp}",
            key="model.tensor_model_parallel_size",
            source=src("model.tensor_model_parallel_size"),
            hint="launch a multiple of TP*PP*CP processes",
        )
    if env.on_cpu and (tp > 1 or pp > 1 or cp > 1):
        problems.add(
            "tensor/pipeline/context parallelism needs GPUs; CPU mode supports data parallelism only",
            key="model.tensor_model_parallel_size",
            source=src("model.tensor_model_parallel_size"),
        )
    _check_directories(container, built_view, problems)
    _check_splits(container, src, problems)
    if env.device == "cuda" and not env.has_cuda:
        problems.add(
            "device=cuda but no CUDA device is visible",
            key="device",
            source=src("device"),
            hint="use device: auto or cpu",
        )
    return problems
