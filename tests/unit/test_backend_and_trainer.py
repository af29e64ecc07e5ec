import sys
import types

import pytest

from primus.core.backend import BackendAdapter, BackendRegistry, BackendSpec
from primus.core.errors import PrimusUserError
from primus.core.trainer import BaseTrainer, run_lifecycle


class RecordingTrainer(BaseTrainer):
    def __init__(self, fail_in=None, fail_cleanup=False):
        self.calls = []
        self.fail_in = fail_in
        self.fail_cleanup = fail_cleanup

    def _step(self, name):
        self.calls.append(name)
        if self.fail_in == name:
            raise RuntimeError(f"boom in {name}")

    def setup(self):
        self._step("setup")

    def init(self):
        self._step("init")

    def run_train(self):
        self._step("run_train")
        return "done"

    def cleanup(self):
        self.calls.append("cleanup")
        if self.fail_cleanup:
            raise OSError("cleanup failed")


def test_lifecycle_order_and_result():
    t = RecordingTrainer()
    assert run_lifecycle(t) == "done"
    assert t.calls == ["setup", "init", "run_train", "cleanup"]


@pytest.mark.parametrize("step", ["setup", "init", "run_train"])
def test_cleanup_runs_on_error(step):
    t = RecordingTrainer(fail_in=step)
    with pytest.raises(RuntimeError, match=f"boom in {step}"):
        run_lifecycle(t)
    assert t.calls[-1] == "cleanup"


def test_cleanup_error_does_not_hide_original_error(caplog):
    t = RecordingTrainer(fail_in="init", fail_cleanup=True)
    with pytest.raises(RuntimeError, match="boom in init"):
        run_lifecycle(t)
    assert "cleanup failed after an earlier error" in caplog.text


def test_cleanup_error_alone_is_raised():
    with pytest.raises(OSError, match="cleanup failed"):
        run_lifecycle(RecordingTrainer(fail_cleanup=True))


class DummyAdapter(BackendAdapter):
    name = "dummy"

    def prepare_environment(self, ctx):
        pass

    def build_config(self, ctx):
        return {}

    def create_trainer(self, ctx, native_config):
        return RecordingTrainer()


def test_registry_imports_lazily_and_caches(monkeypatch):
    module = types.ModuleType("fake_backend_mod")
    module.DummyAdapter = DummyAdapter
    monkeypatch.setitem(sys.modules, "fake_backend_mod", module)
    reg = BackendRegistry()
    reg.register(BackendSpec("dummy", "fake_backend_mod", "DummyAdapter", "a test backend"))
    adapter = reg.get("dummy")
    assert isinstance(adapter, DummyAdapter)
    assert reg.get("dummy") is adapter
    assert reg.names() == ["dummy"]
    reg.clear()
    assert reg.names() == []


def test_registry_duplicate_and_unknown():
    reg = BackendRegistry()
    reg.register(BackendSpec("megatron_bridge", "m", "A", "d"))
    with pytest.raises(ValueError, match="already registered"):
        reg.register(BackendSpec("megatron_bridge", "m2", "A", "d"))
    with pytest.raises(PrimusUserError, match="unknown framework 'megatron'.*did you mean 'megatron_bridge'"):
        reg.spec("megatron")


def test_builtin_backend_is_registered_without_importing_megatron():
    import primus.backends  # noqa: F401
    from primus.core.backend import BACKENDS

    spec = BACKENDS.spec("megatron_bridge")
    assert "model" in spec.sections and "train" in spec.sections
