"""Megatron-Bridge run directly, without the Primus runtime: the "vanilla" benchmark system.

Only two things come from Primus, because Bridge cannot start without them on a TE-less,
offline host: the import placeholders (``prepare_imports``) and the shipped HF config the recipe
reads (``build_recipe``). Everything else is plain Bridge: the recipe, field assignments that
mirror Primus's TE-free settings (local spec, TE-only fusions off), ``pretrain(cfg, forward_step)``.
No performance patch is applied. Primus's ``MetricsRecorder`` callback records the same
metrics.jsonl / summary.json as ``primus train`` (a Bridge callback: it does not alter training).

    python -m primus.backends.megatron_bridge.bench_direct --recipe llama32_1b --seq 2048 \
        --mbs 4 --gbs 8 --iters 30 --run-dir DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def build_config(
    recipe: str,
    seq: int,
    mbs: int,
    gbs: int,
    iters: int,
    lr_warmup: int = 5,
    data: str | None = None,
    vocab: int = 0,
):
    from primus.backends.megatron_bridge.patches.model_settings import te_free_settings
    from primus.backends.megatron_bridge.recipes import build_recipe, resolve_recipe

    cfg = build_recipe(resolve_recipe(recipe).name)
    m = cfg.model
    for key, value in te_free_settings(m).items():
        if hasattr(m, key):
            setattr(m, key, value)
    m.seq_length = cfg.dataset.seq_length = seq
    cfg.train.train_iters = iters
    cfg.train.micro_batch_size = mbs
    cfg.train.global_batch_size = gbs
    cfg.validation.eval_interval = 10**6
    cfg.validation.eval_iters = 0
    cfg.scheduler.lr_warmup_iters = lr_warmup
    cfg.scheduler.lr_decay_iters = iters
    cfg.checkpoint.save = cfg.checkpoint.load = None
    cfg.checkpoint.save_interval = None
    cfg.logger.log_interval = 5
    cfg.logger.tensorboard_dir = None
    cfg.logger.log_throughput = True
    if data:  # real text, through Bridge's own dataset config; the null tokenizer's ids + EOD = vocab
        cfg.dataset.blend = ([data], None)
        cfg.dataset.split = "1,0,0"
        cfg.tokenizer.tokenizer_type = "NullTokenizer"
        cfg.tokenizer.vocab_size = vocab - 1
    return cfg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Megatron-Bridge pretrain() of a recipe, without Primus")
    parser.add_argument("--recipe", default="llama32_1b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--mbs", type=int, default=4)
    parser.add_argument("--gbs", type=int, default=8)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--data", help="Megatron indexed-dataset prefix (default: the recipe's mock data)")
    parser.add_argument("--vocab", type=int, default=0, help="model vocabulary with --data")
    args = parser.parse_args(argv)

    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    import megatron.bridge.training.initialize as initialize

    def use_prebuilt_helpers() -> None:  # the wheel ships them compiled; there is no Makefile
        import megatron.core.datasets.helpers_cpp  # noqa: F401

    initialize.compile_helpers = use_prebuilt_helpers

    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    from primus.backends.megatron_bridge.metrics import MetricsRecorder

    cfg = build_config(
        args.recipe, args.seq, args.mbs, args.gbs, args.iters, data=args.data, vocab=args.vocab
    )
    recorder = MetricsRecorder(args.run_dir, args.gbs * args.seq)
    start = time.time()
    pretrain(cfg, forward_step, callbacks=[recorder])
    print(f"DIRECT_DONE {time.time() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
