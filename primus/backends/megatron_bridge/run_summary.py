"""The one-screen summary of a built config: what will be trained, on what, how, and where to.

Printed before training, by ``--dry-run`` and by ``primus recipes show`` (the full tree, every
value with its source, is in ``config.yaml`` and behind ``--full`` / ``--verbose``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge import tracking
from primus.backends.megatron_bridge.resume import latest_checkpoint


def approx_parameters(model: Any) -> int | None:
    """Weights of a GPT from its sizes (biases left out): embeddings, attention, MLP/experts, norms."""
    hidden, layers = getattr(model, "hidden_size", 0) or 0, getattr(model, "num_layers", 0) or 0
    heads = getattr(model, "num_attention_heads", 0) or 0
    vocab = getattr(model, "vocab_size", None)
    if not (hidden and layers and heads and vocab):
        return None
    groups = getattr(model, "num_query_groups", None) or heads
    kv = getattr(model, "kv_channels", None) or hidden // heads
    ffn = getattr(model, "ffn_hidden_size", None) or 4 * hidden
    in_width = 2 if getattr(model, "gated_linear_unit", False) else 1
    attention = hidden * kv * (heads + 2 * groups) + heads * kv * hidden
    experts = getattr(model, "num_moe_experts", None) or 0
    if experts:
        expert_ffn = getattr(model, "moe_ffn_hidden_size", None) or ffn
        mlp = experts * (in_width + 1) * hidden * expert_ffn + experts * hidden
    else:
        mlp = (in_width + 1) * hidden * ffn
    tied = getattr(model, "share_embeddings_and_output_weights", False)
    return layers * (attention + mlp + 2 * hidden) + vocab * hidden * (1 if tied else 2) + hidden


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _model_line(model: Any) -> str:
    groups = getattr(model, "num_query_groups", None) or model.num_attention_heads
    parts = [
        f"{model.num_layers} layers",
        f"hidden {model.hidden_size}",
        f"{model.num_attention_heads} heads / {groups} KV groups",
        f"FFN {model.ffn_hidden_size or 4 * model.hidden_size}",
        f"vocab {model.vocab_size or 'from the tokenizer'}",
    ]
    experts = getattr(model, "num_moe_experts", None)
    if experts:
        parts.append(f"{experts} experts (top {getattr(model, 'moe_router_topk', '?')})")
    params = approx_parameters(model)
    return ", ".join(parts) + (f"; ~{_count(params)} parameters" if params else "")


def _origin(view: Any, recipe: str | None, config_path: str | None, embedded: bool) -> str:
    parts = []
    if view.get("workload", "pretrain") != "pretrain":
        start = view.get("checkpoint.pretrained_checkpoint", None)
        parts.append(
            f"starting from {start}"
            if start
            else "starting weights: --hf_model_name_or_path DIR or checkpoint.pretrained_checkpoint=CKPT"
        )
    elif view.get("convert_from_hf", False):
        parts.append(f"weights and architecture from the HF model {view.get('hf_model_name_or_path')}")
    if recipe:
        parts.append(f"recipe {recipe}")
    if config_path:
        parts.append(
            f"config {config_path}"
            + (" (the embedded tiny model: no --config or --recipe)" if embedded else "")
        )
    return "; ".join(parts) or "built from the command line"


def _records_line(sft: Any, dataset: Any, view: Any) -> str:
    """Fine-tuning records: how many, which format, what trains, what validates."""
    kind = sft.format.replace("_", "/")
    files = ", ".join(str(p) for p in sft.training)
    if sft.validation:
        validation = f"validation {sft.validation_records} from {', '.join(str(p) for p in sft.validation)}"
    else:
        validation = f"validation {view.get('sft_validation_fraction'):.0%} held out"
    loss = view.get("sft_loss")
    trains = {
        "assistant": "assistant" if sft.format == "chat" else "completion",
        "last_turn": "last turn",
    }.get(loss, loss)
    packed = "packed" if getattr(dataset, "enable_offline_packing", False) else "one record per sequence"
    return f"{sft.training_records} {kind} records from {files} ({validation}); loss on {trains} tokens; {packed}"


def _workload_line(built: Any) -> str:
    peft = built.container.peft
    if built.workload == "pretrain":
        return "pretrain: every weight trains"
    if peft is None:
        return f"{built.workload}: every weight trains (full fine-tuning)"
    targets = ", ".join(getattr(peft, "target_modules", []) or [])
    return (
        f"{built.workload}: adapters of dim {getattr(peft, 'dim', '?')}, alpha {getattr(peft, 'alpha', '?')} "
        f"on {targets}; the base weights stay frozen; checkpoints hold the adapters only"
    )


def _data_line(container: Any, view: Any, sft: Any = None) -> str:
    blend = getattr(container.dataset, "blend", None)
    tokenizer = container.tokenizer
    tok = getattr(tokenizer, "tokenizer_type", None) or "?"
    if getattr(tokenizer, "tokenizer_model", None):
        tok += f" {tokenizer.tokenizer_model}"
    if sft is not None:
        return f"{_records_line(sft, container.dataset, view)}; tokenizer {tok}"
    if view.get("workload", "pretrain") != "pretrain":
        return f"your records: --data_path FILE.jsonl, or a directory with training.jsonl; tokenizer {tok}"
    if blend is None:
        return f"mock data (random tokens); tokenizer {tok}"
    prefixes, weights = blend
    names = ", ".join(
        f"{w:g} x {p}" if weights else p
        for p, w in zip(prefixes, weights or [None] * len(prefixes), strict=True)
    )
    split = getattr(container.dataset, "split", None)
    split_source = str(view.source_of("dataset.split") or "")
    split_text = f", split {split}" + (" (derived)" if split_source.startswith("derived") else "")
    return f"{names}{split_text if split else ''}; tokenizer {tok}"


def _batch_line(container: Any, world_size: int) -> str:
    model, train = container.model, container.train
    parallel = (
        (model.tensor_model_parallel_size or 1)
        * (model.pipeline_model_parallel_size or 1)
        * (model.context_parallel_size or 1)
    )
    dp = max(1, world_size // parallel)
    micro, gbs = train.micro_batch_size, train.global_batch_size
    accumulation = max(1, gbs // (micro * dp)) if micro else 1
    seq = container.dataset.seq_length
    iters = train.train_iters
    saved = latest_checkpoint(container.checkpoint.load)
    start = saved.iteration if saved else 0
    todo = iters - start if iters else 0
    tokens = f" = {todo * gbs * seq:,} tokens" if iters else ""
    span = f"iterations {start + 1}-{iters} of {iters}" if start else f"{iters} iterations"
    return (
        f"{span} x global batch {gbs} (micro {micro} x {accumulation} accumulation x "
        f"{dp} data-parallel) x seq {seq}{tokens}"
    )


def _optimizer_line(container: Any) -> str:
    opt, sched = container.optimizer, container.scheduler
    warmup = getattr(sched, "lr_warmup_iters", 0)
    return (
        f"{opt.optimizer}, lr {opt.lr:g} -> {opt.min_lr or 0:g} ({sched.lr_decay_style}, warmup {warmup})"
        f", weight decay {opt.weight_decay:g}, grad clip {f'{opt.clip_grad:g}' if opt.clip_grad else 'off'}"
    )


def _precision(container: Any) -> str:
    model = container.model
    dtype = "bf16" if getattr(model, "bf16", False) else "fp16" if getattr(model, "fp16", False) else "fp32"
    mp = container.mixed_precision
    name = mp if isinstance(mp, str) else None
    return dtype + (f" ({name})" if name else "")


def _parallel_line(container: Any, world_size: int, device: str) -> str:
    model = container.model
    where = "CPU" if device == "cpu" else "GPU"
    tp, pp = model.tensor_model_parallel_size or 1, model.pipeline_model_parallel_size or 1
    cp = model.context_parallel_size or 1
    ep = getattr(model, "expert_model_parallel_size", 1) or 1
    dp = max(1, world_size // (tp * pp * cp))
    layout = f"TP {tp} x PP {pp} x CP {cp} x DP {dp}" + (f", EP {ep}" if ep > 1 else "")
    return f"{world_size} process{'es' if world_size > 1 else ''} on {where}: {layout}"


def _checkpoint_line(container: Any) -> str:
    ckpt = container.checkpoint
    every = f"every {ckpt.save_interval} iterations" if ckpt.save_interval else "at the end"
    line = f"{every} -> {ckpt.save}"
    if ckpt.load:
        line += f"; resuming from {ckpt.load}"
    return line


def _validation_line(container: Any) -> str:
    val = container.validation
    if not val.eval_iters or not val.eval_interval:
        return "off (validation.eval_interval / eval_iters)"
    return f"every {val.eval_interval} iterations, {val.eval_iters} batches"


def run_plan(built: Any, ctx: Any, *, with_run_dir: bool = True) -> str:
    """The summary of ``built`` for the run ``ctx`` describes (a RunContext): the one place
    that gathers its inputs, for ``--dry-run``, ``recipes show`` and the start of training."""
    return summary_block(
        built,
        world_size=ctx.dist.world_size,
        device=ctx.env.device,
        # a phase that ran twice (e.g. setup again for a recipe build) lists each patch once
        patches=list(
            dict.fromkeys(o.patch_id for o in ctx.patches.state.get("patch_outcomes", []) if o.applied)
        ),
        run_dir=ctx.run_dir if with_run_dir else None,
        config_path=ctx.config_path,
        embedded_config=ctx.embedded_config,
    )


def summary_block(
    built: Any,
    *,
    world_size: int,
    device: str,
    patches: list[str],
    run_dir: str | Path | None,
    config_path: str | None = None,
    embedded_config: bool = False,
) -> str:
    """The summary as aligned ``name  value`` lines."""
    container, view = built.container, built.view()
    rows = [
        ("model", f"{_model_line(container.model)}"),
        ("", _origin(view, built.recipe, config_path, embedded_config)),
        ("workload", _workload_line(built)),
        ("data", _data_line(container, view, getattr(built, "sft_data", None))),
        ("training", _batch_line(container, world_size)),
        ("optimizer", _optimizer_line(container)),
        (
            "precision",
            _precision(container) + (" (CPU: development / smoke-test mode)" if device == "cpu" else ""),
        ),
        ("parallelism", _parallel_line(container, world_size, device)),
        ("validation", _validation_line(container)),
        ("checkpoints", _checkpoint_line(container)),
        ("patches", f"{len(patches)} applied: {', '.join(p.split('.', 1)[-1] for p in patches) or 'none'}"),
    ]
    tracked = tracking.describe(container)
    if tracked:
        rows.append(("tracking", tracked))
    if run_dir is not None:
        rows.append(
            ("run dir", f"{run_dir} (config.yaml: every value with its source; primus.log: the full log)")
        )
    return "\n".join(f"  {name:<12} {value}" for name, value in rows)
