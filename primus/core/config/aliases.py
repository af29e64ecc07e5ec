"""Names other trainers use for Megatron's config keys, for "did you mean" hints.

Fuzzy matching finds ``lr`` for ``lrr`` but not for ``learning_rate``: an unknown key is looked
up here first. An alias maps to one or more Megatron names; only those that exist in the section
where the unknown key was written are suggested, with the section's path.
"""

from __future__ import annotations

from collections.abc import Iterable

from primus.core.errors import did_you_mean

#: alias (as written in HF / PyTorch Lightning / nanoGPT style configs) -> Megatron key names
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    # optimizer
    "learning_rate": ("lr",),
    "min_learning_rate": ("min_lr",),
    "wd": ("weight_decay",),
    "beta1": ("adam_beta1",),
    "beta2": ("adam_beta2",),
    "adam_epsilon": ("adam_eps",),
    "eps": ("adam_eps",),
    "grad_clip": ("clip_grad",),
    "max_grad_norm": ("clip_grad",),
    "gradient_clipping": ("clip_grad",),
    # scheduler
    "warmup_steps": ("lr_warmup_iters",),
    "warmup_iters": ("lr_warmup_iters",),
    "decay_steps": ("lr_decay_iters",),
    # train
    "max_steps": ("train_iters",),
    "num_steps": ("train_iters",),
    "steps": ("train_iters",),
    "iterations": ("train_iters",),
    "batch_size": ("global_batch_size", "micro_batch_size"),
    "gbs": ("global_batch_size",),
    "mbs": ("micro_batch_size",),
    "micro_batch": ("micro_batch_size",),
    # intervals (checkpoint, validation, logger)
    "save_steps": ("save_interval",),
    "checkpoint_interval": ("save_interval",),
    "save_dir": ("save",),
    "output_dir": ("save",),
    "load_dir": ("load",),
    "eval_steps": ("eval_interval",),
    "logging_steps": ("log_interval",),
    "log_steps": ("log_interval",),
    # model / dataset
    "seq_len": ("seq_length",),
    "max_seq_length": ("seq_length",),
    "max_seq_len": ("seq_length",),
    "context_length": ("seq_length",),
    "block_size": ("seq_length",),
    "n_layers": ("num_layers",),
    "n_layer": ("num_layers",),
    "num_hidden_layers": ("num_layers",),
    "n_heads": ("num_attention_heads",),
    "n_head": ("num_attention_heads",),
    "num_heads": ("num_attention_heads",),
    "n_kv_heads": ("num_query_groups",),
    "num_kv_heads": ("num_query_groups",),
    "num_key_value_heads": ("num_query_groups",),
    "dim": ("hidden_size",),
    "d_model": ("hidden_size",),
    "n_embd": ("hidden_size",),
    "hidden_dim": ("hidden_size",),
    "intermediate_size": ("ffn_hidden_size",),
    "ffn_dim": ("ffn_hidden_size",),
    "rope_theta": ("rotary_base",),
    "rms_norm_eps": ("layernorm_epsilon",),
    "norm_eps": ("layernorm_epsilon",),
    "tie_word_embeddings": ("share_embeddings_and_output_weights",),
    "tensor_parallel_size": ("tensor_model_parallel_size",),
    "tp": ("tensor_model_parallel_size",),
    "pipeline_parallel_size": ("pipeline_model_parallel_size",),
    "pp": ("pipeline_model_parallel_size",),
    "cp": ("context_parallel_size",),
    # rng
    "random_seed": ("seed",),
}


def alias_targets(name: str, valid: Iterable[str]) -> list[str]:
    """The Megatron names ``name`` is an alias of that are among ``valid`` (case and ``-`` ignored)."""
    valid = set(valid)
    return [t for t in KEY_ALIASES.get(name.lower().replace("-", "_"), ()) if t in valid]


def unknown_key_hint(name: str, valid: Iterable[str], section: str = "") -> str:
    """ "did you mean" for an unknown key in ``section``: a known alias first, else the closest names."""
    valid = list(valid)
    targets = alias_targets(name, valid)
    if targets:
        paths = [f"{section}.{t}" if section else t for t in targets]
        return "did you mean " + " or ".join(repr(p) for p in paths) + "?"
    return did_you_mean(name, valid)
