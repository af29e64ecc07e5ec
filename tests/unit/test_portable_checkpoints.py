"""A recorded layer spec Bridge cannot rebuild is dropped from a checkpoint's run config."""

from __future__ import annotations

from primus.backends.megatron_bridge.patches.portable_checkpoints import portable

CLOSURE = "primus.backends.megatron_bridge.patches.sdpa_attention.with_sdpa_core_attention.<locals>.spec_fn"


def test_a_primus_closure_spec_is_dropped():
    config = {"model": {"hidden_size": 64, "transformer_layer_spec": {"_call_": False, "_target_": CLOSURE}}}
    assert portable(config) == {"model": {"hidden_size": 64}}


def test_a_spec_naming_a_primus_class_deep_inside_is_dropped():
    spec = {
        "_target_": "megatron.core.transformer.spec_utils.ModuleSpec",
        "submodules": {
            "core_attention": {
                "_target_": "primus.backends.megatron_bridge.patches.sdpa_attention.SDPACoreAttention",
                "_call_": False,
            }
        },
    }
    config = {"model": {"transformer_layer_spec": spec}}
    assert "transformer_layer_spec" not in portable(config)["model"]


def test_a_megatron_spec_stays():
    spec = {"_call_": False, "_target_": "megatron.bridge.models.gpt_provider.local_layer_spec"}
    config = {"model": {"transformer_layer_spec": dict(spec)}}
    assert portable(config)["model"]["transformer_layer_spec"] == spec
