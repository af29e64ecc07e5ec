"""Each compatibility patch applies exactly where its condition holds, and nowhere else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import primus.backends.megatron_bridge.patches  # noqa: F401  (registers the patches)
from primus.backends.megatron_bridge import NAME
from primus.backends.megatron_bridge.patches import import_redirects
from primus.core.environment import EnvFacts
from primus.core.patches import PATCHES, PatchContext
from tests.conftest import REPO

NVIDIA_CONTAINER = EnvFacts(
    has_cuda=True,
    cuda_device_count=8,
    has_te=True,
    device="cuda",
    versions={"nvidia-resiliency-ext": "0.6.0"},
    extra={"mcore_helpers_need_make": False, "apex": True},
)
GPU_WITHOUT_TE = EnvFacts(
    has_cuda=True,
    cuda_device_count=1,
    has_te=False,
    device="cuda",
    versions={"nvidia-resiliency-ext": None},
    extra={"mcore_helpers_need_make": True, "apex": False},
)
CPU_LAPTOP = EnvFacts(
    has_cuda=False,
    has_te=False,
    device="cpu",
    versions={"nvidia-resiliency-ext": None},
    extra={"mcore_helpers_need_make": True, "apex": False},
)
OLD_NVRX = EnvFacts(
    has_cuda=True,
    has_te=True,
    device="cuda",
    versions={"nvidia-resiliency-ext": "0.4.1"},
    extra={"mcore_helpers_need_make": False},
)

EXPECTED = {
    # patch id: (nvidia container, GPU host without TE, CPU laptop)
    "megatron_bridge.te_placeholder": (False, True, True),
    "megatron_bridge.nvrx_placeholder": (False, True, True),
    "megatron_bridge.prebuilt_dataset_helpers": (False, True, True),
    "megatron_bridge.cpu_execution": (False, False, True),
    "megatron_bridge.te_free_model": (False, True, True),
    "megatron_bridge.cpu_training_config": (False, False, True),
    "megatron_bridge.sdpa_attention": (False, True, False),
    "megatron_bridge.packed_sequences_without_te": (False, False, False),  # + a packing dataset
    "megatron_bridge.foreach_grad_norm": (False, True, False),
    "megatron_bridge.fused_adam": (False, True, False),
    "megatron_bridge.compiled_rope": (False, True, False),
    "megatron_bridge.sync_free_packed_rope": (False, False, False),  # + CUDA and a packing dataset
    "megatron_bridge.deferred_grad_check": (False, True, False),
    "megatron_bridge.wgrad_accumulation_fusion": (False, True, False),
    "megatron_bridge.tokenizerless_export": (True, True, True),
    "megatron_bridge.distopt_te_free_checkpoint": (False, True, True),
    "megatron_bridge.zero_centered_norm": (False, True, True),
    "megatron_bridge.stop_before_training": (True, True, True),
    "megatron_bridge.portable_layer_spec": (True, True, True),
    "megatron_bridge.peft_without_te": (False, True, True),
}


def test_every_registered_patch_is_covered_here():
    assert set(PATCHES.ids(NAME)) == set(EXPECTED)


@pytest.mark.parametrize("patch_id", sorted(EXPECTED))
@pytest.mark.parametrize("column,env", [(0, NVIDIA_CONTAINER), (1, GPU_WITHOUT_TE), (2, CPU_LAPTOP)])
def test_condition_table(patch_id, column, env):
    ctx = PatchContext(backend=NAME, env=env)
    assert PATCHES.get(patch_id).condition(ctx) is EXPECTED[patch_id][column]


def test_too_old_nvrx_gets_the_placeholder_and_is_hidden_from_core():
    ctx = PatchContext(backend=NAME, env=OLD_NVRX)
    assert PATCHES.get("megatron_bridge.nvrx_placeholder").condition(ctx)


def test_import_redirect_is_per_importer(tmp_path, monkeypatch):
    (tmp_path / "importer_a.py").write_text("import no_such_pkg_xyz.sub as s\nVALUE = s.Thing\n")
    (tmp_path / "importer_b.py").write_text("import no_such_pkg_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    placeholder = import_redirects.Placeholder("no_such_pkg_xyz", "the xyz package")
    redirect = import_redirects.Redirect("no_such_pkg_xyz", ("importer_a",), placeholder)
    import_redirects.install(redirect)
    try:
        import importer_a

        assert importer_a.VALUE.__name__ == "Thing"
        with pytest.raises(RuntimeError, match="the xyz package is not installed"):
            importer_a.VALUE()
        with pytest.raises(ImportError):
            import importer_b  # noqa: F401
        assert "no_such_pkg_xyz" not in sys.modules
    finally:
        import_redirects.uninstall(redirect)
    assert redirect not in import_redirects.active()


def test_hide_mode_raises_import_error_except_for_exempt(tmp_path, monkeypatch):
    (tmp_path / "hidden_user.py").write_text("import json\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    redirect = import_redirects.Redirect("json", ("hidden_user",), None, exempt=("hidden_user_ok",))
    import_redirects.install(redirect)
    try:
        with pytest.raises(ImportError, match="hidden from hidden_user"):
            import hidden_user  # noqa: F401
    finally:
        import_redirects.uninstall(redirect)


def test_te_placeholder_keeps_megatron_core_without_te():
    """In a fresh process: Bridge imports, TE never enters sys.modules, Core's HAVE_TE stays False."""
    code = textwrap.dedent("""
        import sys
        from primus.backends.megatron_bridge.bootstrap import prepare_imports
        prepare_imports()
        import megatron.bridge
        from megatron.bridge.peft import lora_layers
        import megatron.core.extensions.transformer_engine as te_ext
        from megatron.core.models.gpt import gpt_layer_specs
        assert "transformer_engine" not in sys.modules, "fake TE leaked into sys.modules"
        assert gpt_layer_specs.HAVE_TE is False
        print("OK", lora_layers.te.__class__.__name__)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK Placeholder" in out.stdout


def test_cpu_runtime_redirects_and_restores():
    import torch

    from primus.backends.megatron_bridge.patches import cpu_runtime

    # an in-process conversion or generation earlier in the session may have enabled it already:
    # start from the real torch.cuda and leave the process as it was found
    already = cpu_runtime.enabled()
    cpu_runtime.disable()
    try:
        original = torch.cuda.synchronize
        cpu_runtime.enable()
        try:
            assert torch.zeros(2, device="cuda").device.type == "cpu"
            assert torch.ones(1).cuda().device.type == "cpu"
            assert torch.cuda.current_device() == torch.device("cpu")
            assert torch.cuda.get_rng_state().dtype == torch.uint8
            torch.cuda.synchronize()
        finally:
            cpu_runtime.disable()
        assert torch.cuda.synchronize is original
        assert not cpu_runtime.enabled()
    finally:
        if already:
            cpu_runtime.enable()


@pytest.mark.megatron
def test_te_free_model_refuses_layer_specs_built_from_te_layers(tmp_path):
    """Swapping Gemma2's TE-built spec for the local one would silently drop its post-norms."""
    from tests.conftest import run_cli

    out = run_cli("train", "--recipe", "gemma2_2b", "--device", "cpu", "--run_dir", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Gemma2's layer spec fuses its post-attention / post-MLP norms into TE linear layers" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


def test_every_patch_is_documented_in_the_backend_readme():
    text = (REPO / "primus/backends/megatron_bridge/README.md").read_text()
    assert [pid for pid in PATCHES.ids(NAME) if f"`{pid}`" not in text] == []
