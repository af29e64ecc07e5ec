"""Megatron-Bridge run directly (no Primus runtime): the baseline for Primus's overhead.

Only two things come from Primus, because Megatron-Bridge cannot start without them on a
TE-less, offline host: the import placeholders (``prepare_imports``) and the shipped HF
config for the recipe (``shipped_hf_configs``). Everything else is plain Bridge: the recipe
function, field assignments mirroring Primus's TE-free settings, ``pretrain(cfg, forward_step)``.

    python benchmarks/megatron_bridge_direct.py --recipe llama32_1b --seq 2048 --mbs 4 --gbs 8 --iters 30
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="llama32_1b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--mbs", type=int, default=4)
    parser.add_argument("--gbs", type=int, default=8)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--log-interval", type=int, default=5)
    args = parser.parse_args()

    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    import megatron.bridge.training.initialize as initialize

    def use_prebuilt_helpers() -> None:
        import megatron.core.datasets.helpers_cpp  # noqa: F401

    initialize.compile_helpers = use_prebuilt_helpers

    from megatron.bridge.models.gpt_provider import local_layer_spec
    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    from primus.backends.megatron_bridge.recipes import build_recipe, resolve_recipe

    cfg = build_recipe(resolve_recipe(args.recipe).name)
    m = cfg.model
    m.transformer_layer_spec = local_layer_spec
    m.transformer_impl = "local"
    for flag in (
        "persist_layer_norm",
        "apply_rope_fusion",
        "gradient_accumulation_fusion",
        "masked_softmax_fusion",
    ):
        setattr(m, flag, False)
    m.cross_entropy_fusion_impl = "native"
    m.seq_length = cfg.dataset.seq_length = args.seq
    cfg.train.train_iters = args.iters
    cfg.train.micro_batch_size = args.mbs
    cfg.train.global_batch_size = args.gbs
    cfg.validation.eval_interval = 10**6
    cfg.validation.eval_iters = 0
    cfg.scheduler.lr_warmup_iters = 5
    cfg.scheduler.lr_decay_iters = args.iters
    cfg.checkpoint.save = cfg.checkpoint.load = None
    cfg.checkpoint.save_interval = None
    cfg.logger.log_interval = args.log_interval
    cfg.logger.tensorboard_dir = None
    cfg.logger.log_throughput = True
    start = time.time()
    pretrain(cfg, forward_step)
    print(f"DIRECT_DONE {time.time() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
