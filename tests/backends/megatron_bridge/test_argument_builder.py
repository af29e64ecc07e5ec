"""MegatronBridgeArgBuilder: precedence, strict keys, derived values, preflight, build_args patches."""

from __future__ import annotations

import pytest

from primus.backends.megatron_bridge import NAME, preflight
from primus.backends.megatron_bridge.argument_builder import MegatronBridgeArgBuilder
from primus.backends.megatron_bridge.bootstrap import prepare_imports
from primus.backends.megatron_bridge.derived_values import llama_ffn_hidden_size, padded_vocab_size
from primus.core.config import load_config
from primus.core.environment import EnvFacts
from primus.core.errors import ConfigError
from primus.core.patches import PatchContext, run_patches
from tests.backends.megatron_bridge.test_patches import CPU_LAPTOP, GPU_WITHOUT_TE, NVIDIA_CONTAINER

pytestmark = pytest.mark.megatron


@pytest.fixture(scope="module", autouse=True)
def _megatron_importable():
    prepare_imports(CPU_LAPTOP)


def build(overrides, env: EnvFacts = CPU_LAPTOP, world_size: int = 1, **flags):
    user = load_config(None, overrides=overrides, flags=flags)
    user.set("run_dir", "/tmp/primus-test-run", "cli")
    return MegatronBridgeArgBuilder(user, env, world_size).build()


MODEL = ["model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4"]


def test_llama_rules():
    assert llama_ffn_hidden_size(4096) == 11008
    assert llama_ffn_hidden_size(64) == 256
    assert llama_ffn_hidden_size(4096, multiple_of=1024) == 11264
    assert padded_vocab_size(250, 128, 1) == 256
    assert padded_vocab_size(32000, 128, 2) == 32000


def test_scratch_model_with_derived_values_and_sources():
    built = build(
        [*MODEL, "model.hidden_size=4096", "model.num_attention_heads=32", "dataset.seq_length=128"]
    )
    m, view = built.container.model, built.view()
    assert (m.ffn_hidden_size, m.kv_channels, m.num_query_groups) == (11008, 128, 32)
    assert view.source_of("model.ffn_hidden_size") == "derived:llama_ffn(multiple_of=256)"
    assert view.source_of("model.kv_channels") == "derived:hidden_size/num_attention_heads"
    assert m.seq_length == 128 and view.source_of("model.seq_length") == "derived:dataset.seq_length"
    assert view.source_of("model.hidden_size") == "cli"
    assert view.source_of("model.normalization") == "default"
    assert m.normalization == "RMSNorm" and m.gated_linear_unit
    assert m.vocab_size == 32000 and view.source_of("model.vocab_size") == "derived:vocab_padding"
    assert built.container.checkpoint.save == "/tmp/primus-test-run/checkpoints"
    assert built.container.checkpoint.load is None


def test_multiple_of_and_vocab_padding():
    built = build([*MODEL, "model.multiple_of=64", "tokenizer.vocab_size=250"])
    assert built.container.model.ffn_hidden_size == 192
    assert built.container.model.vocab_size == 256


def test_resume_points_load_at_save_dir():
    built = build(MODEL, resume=True)
    assert built.container.checkpoint.load == built.container.checkpoint.save


def test_user_problems_are_collected_with_hints():
    with pytest.raises(ConfigError) as err:
        build(
            [
                *MODEL,
                "model.num_layer=3",
                "train.train_iters=abc",
                "optimizer.lr=[1]",
                "model.params_dtype=float99",
                "dataset.seq_length=64",
                "model.seq_length=32",
            ]
        )
    text = str(err.value)
    assert "model.num_layer (cli): unknown key; did you mean 'num_layers'" in text
    assert "train.train_iters (cli): expected int, got str 'abc'" in text
    assert "optimizer.lr (cli): expected float, got list" in text
    assert "model.params_dtype (cli): expected a torch dtype name" in text
    assert "model.seq_length=32 and dataset.seq_length=64 differ" in text


def test_target_instantiation_is_refused():
    with pytest.raises(ConfigError, match="`_target_` instantiation is not allowed"):
        build([*MODEL, "+optimizer.lr={_target_: os.system}"])


def test_added_keys_pass_strict_checks():
    built = build([*MODEL, "+model.my_experiment_flag=1"])
    assert built.container.model.my_experiment_flag == 1


def test_global_batch_divisible_by_micro_batch_times_dp():
    with pytest.raises(
        ConfigError, match="global batch 6 is not divisible by micro batch 2 x data-parallel size 2"
    ):
        build([*MODEL, "train.global_batch_size=6", "train.micro_batch_size=2"], world_size=2)
    built = build([*MODEL, "train.micro_batch_size=3"], world_size=2)  # 32 from the defaults
    assert built.container.train.global_batch_size == 30
    assert built.view().source_of("train.global_batch_size") == "derived:micro_batch_size*data_parallel_size"


def test_enum_and_dtype_coercion():
    import torch
    from megatron.core.transformer.enums import AttnBackend

    built = build([*MODEL, "model.params_dtype=bfloat16", "model.attention_backend=local"])
    assert built.container.model.params_dtype is torch.bfloat16
    assert built.container.model.attention_backend is AttnBackend.local


def test_data_path_missing_files(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        build(MODEL, data_path=f"0.7 {tmp_path}/a 0.3 {tmp_path}/b")
    text = str(err.value)
    assert f"has no {tmp_path}/a.idx" in text and f"{tmp_path}/b.bin / {tmp_path}/b.idx" in text


def test_data_path_blend(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.bin").write_bytes(b"")
        (tmp_path / f"{name}.idx").write_bytes(b"")
    built = build(MODEL, data_path=f"0.7 {tmp_path}/a 0.3 {tmp_path}/b")
    assert built.container.dataset.blend == ([f"{tmp_path}/a", f"{tmp_path}/b"], [0.7, 0.3])


def _preflight(overrides, env=CPU_LAPTOP, world_size=1):
    built = build(overrides, env, world_size)
    problems = preflight.check_requested(built.container, built.view(), env)
    problems.extend(preflight.check(built.container, built.view(), env, world_size).problems)
    return [str(p) for p in problems.problems]


def test_preflight_fp8_without_te():
    problems = _preflight([*MODEL, "mixed_precision=bf16_with_fp8_delayed_scaling_mixed"])
    assert any("needs Transformer Engine" in p and p.startswith("mixed_precision (cli)") for p in problems)
    assert not _preflight([*MODEL, "mixed_precision=bf16_with_fp8_delayed_scaling_mixed"], NVIDIA_CONTAINER)


def test_preflight_head_geometry():
    text = "\n".join(_preflight([*MODEL, "model.num_attention_heads=3", "model.num_query_groups=2"]))
    assert "num_attention_heads=3 is not divisible by num_query_groups=2" in text
    assert "hidden_size=64 is not divisible by num_attention_heads=3" in text


def test_preflight_parallel_sizes():
    gpu = NVIDIA_CONTAINER
    problems = _preflight(
        [
            *MODEL,
            "model.num_attention_heads=6",
            "model.tensor_model_parallel_size=4",
            "model.pipeline_model_parallel_size=3",
        ],
        gpu,
        world_size=8,
    )
    text = "\n".join(problems)
    assert "num_attention_heads=6 is not divisible by tensor_model_parallel_size=4" in text
    assert "num_layers=2 is not divisible by pipeline size 3" in text
    assert "world size 8 is not divisible by TP 4 x PP 3 x CP 1" in text


def _patched(env):
    built = build(MODEL, env)
    ctx = PatchContext(backend=NAME, env=env, native_config=built)
    run_patches("build_args", ctx)
    return built


def test_build_args_patches_change_nothing_in_an_nvidia_container():
    plain = build(MODEL, NVIDIA_CONTAINER)
    patched = _patched(NVIDIA_CONTAINER)
    assert patched.view().to_yaml() == plain.view().to_yaml()


def test_build_args_patches_on_cpu():
    import torch

    built = _patched(CPU_LAPTOP)
    c, view = built.container, built.view()
    assert c.model.transformer_impl == "local" and c.model.apply_rope_fusion is False
    assert view.source_of("model.transformer_impl") == "patch:megatron_bridge.te_free_model"
    assert c.optimizer.clip_grad == 0.0 and c.dist.distributed_backend == "gloo"
    assert c.model.params_dtype is torch.float32 and c.mixed_precision is None
    assert view.source_of("optimizer.clip_grad") == "patch:megatron_bridge.cpu_training_config"


def test_precedence_recipe_then_yaml_then_cli(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "recipe: llama32_1b\ntrain:\n  train_iters: 50\n  micro_batch_size: 2\n"
    )
    user = load_config(tmp_path / "exp.yaml", overrides=["train.train_iters=7"])
    user.set("run_dir", str(tmp_path / "run"), "cli")
    built = MegatronBridgeArgBuilder(user, CPU_LAPTOP).build()
    c, view = built.container, built.view()
    assert c.model.num_layers == 16 and view.source_of("model.num_layers") == "recipe:llama32_1b"
    assert c.train.micro_batch_size == 2 and view.source_of("train.micro_batch_size").endswith("exp.yaml:4")
    assert c.train.train_iters == 7 and view.source_of("train.train_iters") == "cli"
    assert c.checkpoint.save == str(tmp_path / "run" / "checkpoints")


def test_unknown_recipe_suggests():
    from primus.core.errors import PrimusUserError

    with pytest.raises(PrimusUserError, match="unknown recipe 'llama3_8bb'.*did you mean"):
        build(["recipe=llama3_8bb"])


def test_fast_path_reaches_the_model_spec_of_a_recipe():
    """On a TE-less GPU host the llama recipe's layer spec ends up with SDPA core attention."""
    from megatron.core.transformer.enums import AttnBackend

    from primus.backends.megatron_bridge.patches.sdpa_attention import SDPACoreAttention

    built = build(["recipe=llama32_1b"], GPU_WITHOUT_TE)
    ctx = PatchContext(backend=NAME, env=GPU_WITHOUT_TE, native_config=built)
    run_patches("build_args", ctx)
    model = built.container.model
    assert model.attention_backend != AttnBackend.local  # the provider would force DotProductAttention
    spec = model.transformer_layer_spec(model)
    assert spec.submodules.self_attention.submodules.core_attention is SDPACoreAttention


def test_preflight_checkpoint_shape_mismatch(tmp_path):
    import yaml

    ckpt = tmp_path / "run" / "checkpoints"
    (ckpt / "iter_0000010").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("10")
    saved = {"model": {"num_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 32000}}
    (ckpt / "iter_0000010" / "run_config.yaml").write_text(yaml.safe_dump(saved))
    user = load_config(None, overrides=MODEL, flags={"resume": True})
    user.set("run_dir", str(tmp_path / "run"), "cli")
    built = MegatronBridgeArgBuilder(user, CPU_LAPTOP).build()
    problems = [str(p) for p in preflight.check(built.container, built.view(), CPU_LAPTOP, 1).problems]
    assert problems == [
        f"model.num_layers (cli): the checkpoint in {ckpt} (iteration 10) has num_layers=4, this config 2; "
        "resume with the model shape the checkpoint was saved with, or start a new run_dir"
    ]


def test_preflight_resume_with_nothing_left_to_train(tmp_path):
    import yaml

    ckpt = tmp_path / "run" / "checkpoints"
    (ckpt / "iter_0000040").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("40")
    (ckpt / "iter_0000040" / "run_config.yaml").write_text(yaml.safe_dump({"model": {"num_layers": 2}}))
    user = load_config(None, overrides=[*MODEL, "train.train_iters=20"], flags={"resume": True})
    user.set("run_dir", str(tmp_path / "run"), "cli")
    built = MegatronBridgeArgBuilder(user, CPU_LAPTOP).build()
    problems = [str(p) for p in preflight.check(built.container, built.view(), CPU_LAPTOP, 1).problems]
    assert problems == [
        f"train.train_iters (cli): the checkpoint in {ckpt} is at iteration 40 and train.train_iters is 20: "
        "nothing left to train; to train longer, raise it (e.g. train.train_iters=80)"
    ]


def test_earlier_run_is_checked_from_the_user_config_alone(tmp_path):
    """Before Megatron is imported: the run-dir refusal must come in a second."""
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("20")
    user = load_config(None, flags={"run_dir": str(tmp_path / "run")})
    (problem,) = preflight.check_earlier_run(user).problems
    assert "has checkpoints up to iteration 20" in str(problem) and "--start_over" in str(problem)
    resumed = load_config(None, flags={"run_dir": str(tmp_path / "run"), "resume": True})
    assert not preflight.check_earlier_run(resumed)
    both = load_config(None, flags={"run_dir": str(tmp_path / "run"), "resume": True, "start_over": True})
    assert "choose one" in str(preflight.check_earlier_run(both).problems[0])


@pytest.mark.parametrize("user_value", [None, "false", "true"])
def test_wgrad_fusion_patch_turns_the_fusion_on_without_te_unless_the_user_turned_it_off(
    monkeypatch, user_value
):
    from megatron.core.tensor_parallel import layers

    # the patch installs torch's kernel into Megatron's linear layers: undone after the test
    monkeypatch.setattr(layers, "_grad_accum_fusion_available", False)
    monkeypatch.setattr(layers, "fused_weight_gradient_mlp_cuda", None, raising=False)
    overrides = MODEL + ([f"model.gradient_accumulation_fusion={user_value}"] if user_value else [])
    built = build(overrides, GPU_WITHOUT_TE)
    run_patches("build_args", PatchContext(backend=NAME, env=GPU_WITHOUT_TE, native_config=built))
    source = built.view().source_of("model.gradient_accumulation_fusion")
    if user_value == "false":
        assert built.container.model.gradient_accumulation_fusion is False and source == "cli"
        assert layers._grad_accum_fusion_available is False
    else:
        assert built.container.model.gradient_accumulation_fusion is True
        assert source == "patch:megatron_bridge.wgrad_accumulation_fusion"
        assert layers._grad_accum_fusion_available is True
        assert layers.fused_weight_gradient_mlp_cuda.wgrad_gemm_accum_fp32.__module__.endswith("wgrad_fusion")


@pytest.mark.parametrize(
    "excluded",
    [
        "ddp.use_megatron_fsdp=true",
        "model.restore_modelopt_state=true",
        "model.defer_embedding_wgrad_compute=true",
    ],
)
def test_wgrad_fusion_patch_stays_off_where_megatron_cannot_use_it(monkeypatch, excluded):
    from megatron.core.tensor_parallel import layers

    monkeypatch.setattr(layers, "_grad_accum_fusion_available", False)
    built = build([*MODEL, excluded], GPU_WITHOUT_TE)
    run_patches("build_args", PatchContext(backend=NAME, env=GPU_WITHOUT_TE, native_config=built))
    assert built.container.model.gradient_accumulation_fusion is False
    assert layers._grad_accum_fusion_available is False
