"""compiled_rope stays off when the dataset packs: thd RoPE runs once per record, one shape each."""

from __future__ import annotations

from types import SimpleNamespace

from primus.backends.megatron_bridge import NAME
from primus.backends.megatron_bridge.patches import perf  # noqa: F401  (registers the patches)
from primus.core.environment import EnvFacts
from primus.core.patches import PATCHES, PatchContext

GPU_WITHOUT_TE = EnvFacts(has_cuda=True, has_te=False, device="cuda", versions={}, extra={"apex": False})


def _ctx(**dataset: bool) -> PatchContext:
    built = SimpleNamespace(container=SimpleNamespace(dataset=SimpleNamespace(**dataset)))
    return PatchContext(backend=NAME, env=GPU_WITHOUT_TE, native_config=built)


def test_compiled_rope_is_a_build_args_patch_that_skips_packed_datasets():
    patch = PATCHES.get("megatron_bridge.compiled_rope")
    assert patch.phase == "build_args"  # the dataset is known only once the config is built
    assert patch.condition(_ctx(enable_offline_packing=False, enable_in_batch_packing=False))
    for packing in ({"enable_offline_packing": True}, {"enable_in_batch_packing": True}):
        ctx = _ctx(**packing)
        assert not patch.condition(ctx)
        assert patch.condition.unmet(ctx) == "not (the dataset packs sequences (offline or in-batch packing))"
    # the patch that makes packing work at all still applies
    assert PATCHES.get("megatron_bridge.packed_sequences_without_te").condition(
        _ctx(enable_offline_packing=True)
    )
