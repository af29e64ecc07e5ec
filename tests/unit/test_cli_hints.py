"""Hints for common mistakes: overrides without `=`, other trainers' key names, and which
patches apply on this machine."""

from __future__ import annotations

import pytest

from primus.core.config.aliases import KEY_ALIASES, alias_targets, unknown_key_hint
from primus.core.config.overrides import missing_equals
from primus.core.patches import Condition, PatchContext


def test_missing_equals_pairs_a_dotted_key_with_its_value():
    assert missing_equals(["train.train_iters", "100"]) == [
        ("train.train_iters 100", "train.train_iters=100")
    ]
    assert missing_equals(["+model.foo", "3", "logger.x", "a.b=1"]) == [
        ("+model.foo 3", "+model.foo=3"),
        ("logger.x", "logger.x=VALUE"),
    ]
    assert missing_equals(["--bogus", "100", "train", "a.b=2", "~c.d"]) == []  # not a dotted key


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["train", "--config", "x.yaml", "train.train_iters", "100"],
            "primus: error: 'train.train_iters 100': overrides are key=value (write train.train_iters=100)\n",
        ),
        (
            ["config", "show", "model.num_layers", "2", "train.train_iters=3"],
            "primus: error: 'model.num_layers 2': overrides are key=value (write model.num_layers=2)\n",
        ),
    ],
)
def test_override_without_equals_is_one_line_error(cli, tmp_path, argv, message):
    out = cli(*argv, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr == message


def test_unknown_option_stays_an_argparse_error(cli):
    out = cli("config", "show", "--train.train_iters", "100")
    assert out.returncode == 2
    assert "unrecognized arguments: --train.train_iters 100" in out.stderr


def test_alias_hint_names_the_key_in_the_same_section():
    optimizer = ["lr", "min_lr", "weight_decay", "clip_grad", "adam_beta1"]
    assert alias_targets("learning_rate", optimizer) == ["lr"]
    assert alias_targets("Learning-Rate", optimizer) == ["lr"]
    assert unknown_key_hint("learning_rate", optimizer, "optimizer") == "did you mean 'optimizer.lr'?"
    assert unknown_key_hint("max_grad_norm", optimizer, "optimizer") == "did you mean 'optimizer.clip_grad'?"
    train = ["train_iters", "global_batch_size", "micro_batch_size"]
    assert unknown_key_hint("batch_size", train, "train") == (
        "did you mean 'train.global_batch_size' or 'train.micro_batch_size'?"
    )
    # an alias whose Megatron name lives in another section falls back to fuzzy matching
    assert unknown_key_hint("max_steps", optimizer, "optimizer") == "valid: " + ", ".join(sorted(optimizer))
    assert unknown_key_hint("lrr", optimizer, "optimizer") == "did you mean 'lr'?"
    assert all(isinstance(v, tuple) and v for v in KEY_ALIASES.values())


@pytest.mark.megatron
def test_dry_run_suggests_the_megatron_name_of_an_alias(cli):
    out = cli(
        "train", "--config", "primus/configs/tiny_llama.yaml", "--dry-run",
        "optimizer.learning_rate=1e-3", "train.max_steps=5", "model.n_layers=1",
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "optimizer.learning_rate (cli): unknown key; did you mean 'optimizer.lr'?" in out.stderr
    assert "train.max_steps (cli): unknown key; did you mean 'train.train_iters'?" in out.stderr
    assert "model.n_layers (cli): unknown key; did you mean 'model.num_layers'?" in out.stderr
    # the error comes first and alone: what was logged while the config was built is dropped
    assert out.stderr.startswith("primus: error: 3 problems") and "[primus]" not in out.stderr


def test_condition_names_the_part_that_does_not_hold():
    cuda = Condition(lambda ctx: ctx.env.device == "cuda", "training on CUDA")
    no_te = Condition(lambda ctx: not ctx.env.has_te, "Transformer Engine absent")
    from primus.core.environment import EnvFacts

    ctx = PatchContext("b", EnvFacts(has_cuda=False, device="cpu"))
    assert (cuda & no_te).unmet(ctx) == "training on CUDA" and (no_te & cuda).unmet(ctx) == "training on CUDA"
    assert no_te.unmet(ctx) is None and (cuda & no_te).parts == (cuda, no_te)


@pytest.mark.megatron  # the prebuilt-helpers condition imports Megatron-Core
def test_patches_list_marks_what_applies_here(cli):
    out = cli("patches", "list", "--device", "cpu", env={"PRIMUS_PATCHES": "-megatron_bridge.te_free_model"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    mark = {line.split()[0]: line for line in lines if line.startswith("megatron_bridge.")}
    assert "[applies here]" in mark["megatron_bridge.cpu_training_config"]
    assert '[not here: "training on CUDA" does not hold]' in mark["megatron_bridge.sdpa_attention"]
    assert "[not here: disabled by PRIMUS_PATCHES]" in mark["megatron_bridge.te_free_model"]
    applying = sum("[applies here]" in line for line in mark.values())
    assert f"{len(mark)} patches, {applying} apply here (training device cpu" in out.stdout
    assert out.stderr == ""
