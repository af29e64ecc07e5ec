"""What a resumed run inherits from its checkpoint: the model shape and the LR schedule.

Bridge saves the configuration it ran with next to every checkpoint
(``iter_NNNNNNN/run_config.yaml``, after its own run-time derivations such as the model
vocabulary taken from the tokenizer). A resume is compared with that, never with a raw
recipe value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primus.core.config.resolved import derived_source

logger = logging.getLogger(__name__)

TRACKER = "latest_checkpointed_iteration.txt"

#: model fields that decide tensor shapes: a checkpoint saved with other values cannot load
SHAPE_FIELDS = (
    "num_layers",
    "hidden_size",
    "ffn_hidden_size",
    "num_attention_heads",
    "num_query_groups",
    "kv_channels",
    "vocab_size",
    "num_moe_experts",
)
#: scheduler fields that shape the LR curve (saved config -> what Megatron restores)
SCHEDULE_FIELDS = ("lr_warmup_iters", "lr_decay_iters", "lr_decay_style")


@dataclass(frozen=True)
class SavedRun:
    """The latest checkpoint in a directory and the configuration saved with it."""

    directory: str
    iteration: int
    config: dict[str, Any]

    def section(self, name: str) -> dict[str, Any]:
        return self.config.get(name) or {}


def latest_checkpoint(directory: str | None) -> SavedRun | None:
    """None when ``directory`` has no complete checkpoint (or an unreadable run_config.yaml)."""
    import yaml

    if not directory:
        return None
    try:
        iteration = int((Path(directory) / TRACKER).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        path = Path(directory) / f"iter_{iteration:07d}" / "run_config.yaml"
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    return SavedRun(str(directory), iteration, config)


def shape_mismatches(container: Any, saved: SavedRun) -> list[tuple[str, Any, Any]]:
    """(field, saved value, this config's value) for every shape field that differs."""
    model, theirs = container.model, saved.section("model")
    out = []
    for field in SHAPE_FIELDS:
        ours, old = getattr(model, field, None), theirs.get(field)
        if ours is not None and old is not None and ours != old:
            out.append((field, old, ours))
    return out


def _decay_iters(scheduler: dict[str, Any], train: dict[str, Any]) -> Any:
    return scheduler.get("lr_decay_iters") or train.get("train_iters")


def schedule_note(container: Any, saved: SavedRun) -> str | None:
    """What happens to the LR schedule on this resume, when this config's schedule differs."""
    scheduler = container.scheduler
    if getattr(scheduler, "override_opt_param_scheduler", False):
        return (
            f"resume: scheduler.override_opt_param_scheduler=true: the LR schedule is this config's "
            f"(decay over {scheduler.lr_decay_iters or container.train.train_iters} iterations), "
            "not the checkpoint's"
        )
    old_sched, old_train = saved.section("scheduler"), saved.section("train")
    old_decay = _decay_iters(old_sched, old_train)
    new_decay = scheduler.lr_decay_iters or container.train.train_iters
    if old_decay is None or old_decay == new_decay:
        return None
    train_iters = container.train.train_iters
    tail = ""
    if train_iters and old_decay < train_iters:
        min_lr = saved.section("optimizer").get("min_lr", old_sched.get("min_lr"))
        tail = f"; iterations {old_decay + 1}-{train_iters} run at min_lr {min_lr}"
    return (
        f"resume: the LR schedule continues as saved at iteration {saved.iteration} (decay over "
        f"{old_decay} iterations, warmup {old_sched.get('lr_warmup_iters')}){tail}. "
        "To stretch it to this config's length instead, set scheduler.override_opt_param_scheduler=true"
    )


def own_checkpoint_dir(user: Any) -> str | None:
    """Where this run saves its checkpoints: ``checkpoint.save``, else ``RUN_DIR/checkpoints``."""
    checkpoint = user.get("checkpoint", None)
    save = checkpoint.get("save") if isinstance(checkpoint, dict) else None
    run_dir = user.get("run_dir", None)
    return save or (str(Path(run_dir) / "checkpoints") if run_dir else None)


def resolve_auto(user: Any) -> None:
    """``resume: auto`` becomes ``true`` when the run's checkpoint directory holds a complete
    checkpoint, else ``false``; an earlier attempt there without one (metrics, logs) is then moved
    aside (``start_over``), as a restarted job that failed before its first save has nothing to keep."""
    if user.get("resume", False) != "auto":
        return
    directory = own_checkpoint_dir(user)
    saved = latest_checkpoint(directory)
    if saved is not None:
        user.set("resume", True, derived_source(f"resume auto: checkpoint at iteration {saved.iteration}"))
        logger.info(
            "resume auto: resuming from the checkpoint at iteration %d in %s", saved.iteration, directory
        )
        return
    user.set("resume", False, derived_source("resume auto: no checkpoint"))
    run_dir = user.get("run_dir", None)
    earlier = run_dir and Path(run_dir).is_dir() and (Path(run_dir) / "metrics.jsonl").is_file()
    if earlier and not user.get("start_over", False):
        user.set("start_over", True, derived_source("resume auto: an earlier attempt saved no checkpoint"))
    logger.info("resume auto: no checkpoint in %s: training from the start", directory)
