"""W&B / MLflow tracking without Megatron: refusals before training, the defaults Primus fills in
(with their sources), and the parameters it adds to Bridge's runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from primus.backends.megatron_bridge import tracking
from primus.backends.megatron_bridge.config_tree import Provenance
from primus.core.config.resolved import CLI, ResolvedConfig

REPO = Path(__file__).resolve().parents[2]


def user_config(**logger_keys) -> ResolvedConfig:
    cfg = ResolvedConfig()
    cfg.set("run_dir", "/runs/exp1", CLI)
    for key, value in logger_keys.items():
        cfg.set(f"logger.{key}", value, CLI)
    return cfg


def bridge_logger(**values) -> SimpleNamespace:
    """Bridge's LoggerConfig tracker fields, at Bridge's defaults unless given."""
    fields = dict.fromkeys(
        (
            "wandb_project",
            "wandb_exp_name",
            "wandb_save_dir",
            "wandb_entity",
            "mlflow_experiment",
            "mlflow_run_name",
            "mlflow_tracking_uri",
        )
    )
    fields["mlflow_log_artifacts"] = True
    fields.update(values)
    return SimpleNamespace(logger=SimpleNamespace(**fields))


@pytest.fixture
def installed(monkeypatch):
    """Pretend the given packages are the only ones installed."""

    def only(*packages: str) -> None:
        monkeypatch.setattr(tracking, "installed", lambda name: name in packages)

    return only


def messages(problems) -> list[str]:
    return [str(p) for p in problems.problems]


def test_a_missing_package_is_one_line_naming_the_key_and_the_install(installed):
    installed()
    cfg = user_config(wandb_project="p", mlflow_experiment="e")
    assert messages(tracking.check_user_config(cfg, environ={})) == [
        "logger.wandb_project (cli): wandb is not installed; pip install -e '.[tracking]'",
        "logger.mlflow_experiment (cli): mlflow is not installed; pip install -e '.[tracking]'",
    ]
    installed("wandb", "mlflow")
    assert not tracking.check_user_config(cfg, environ={})
    assert not tracking.check_user_config(user_config(), environ={})  # no tracker: nothing needed


def test_keys_that_cannot_log_are_refused(installed):
    installed("wandb", "mlflow")
    cfg = user_config(mlflow_tracking_uri="http://mlflow:5000", wandb_exp_name="x")
    assert messages(tracking.check_user_config(cfg, environ={})) == [
        "logger.wandb_exp_name (cli): is set but logger.wandb_project is not: nothing would be "
        "logged to W&B; add logger.wandb_project=NAME, or drop logger.wandb_exp_name",
        "logger.mlflow_tracking_uri (cli): is set but logger.mlflow_experiment is not: nothing would "
        "be logged to MLflow; add logger.mlflow_experiment=NAME, or drop logger.mlflow_tracking_uri",
    ]
    empty = user_config(wandb_project="p", wandb_exp_name="")
    assert messages(tracking.check_user_config(empty, environ={})) == [
        "logger.wandb_exp_name (cli): is empty; name the run, or drop the key (default: the run's name)"
    ]


def test_a_database_store_needs_sqlalchemy(installed):
    installed("mlflow")
    cfg = user_config(mlflow_experiment="e", mlflow_tracking_uri="sqlite:///mlflow.db")
    assert messages(tracking.check_user_config(cfg, environ={})) == [
        "logger.mlflow_tracking_uri (cli): a sqlite store needs SQLAlchemy, which mlflow-skinny leaves "
        "out; pip install mlflow (the full package), or use a file: or http(s): tracking URI"
    ]
    from_env = tracking.check_user_config(
        user_config(mlflow_experiment="e"), environ={"MLFLOW_TRACKING_URI": "postgresql+psycopg://db/x"}
    )
    assert messages(from_env)[0].startswith("logger.mlflow_tracking_uri (env:MLFLOW_TRACKING_URI): a ")
    installed("mlflow", "sqlalchemy")
    assert not tracking.check_user_config(cfg, environ={})


def test_defaults_live_in_the_run_dir_and_carry_the_run_name():
    cfg = user_config(wandb_project="p", mlflow_experiment="e")
    container, provenance = bridge_logger(wandb_project="p", mlflow_experiment="e"), Provenance("default")
    tracking.fill_defaults(container, cfg, provenance, "/runs/exp1", environ={})
    log = container.logger
    assert (log.wandb_exp_name, log.wandb_save_dir) == ("exp1", "/runs/exp1")
    assert (log.mlflow_run_name, log.mlflow_tracking_uri) == ("exp1", "file:///runs/exp1/mlruns")
    assert log.mlflow_log_artifacts is False  # a local store does not copy every checkpoint
    assert provenance.sources == {
        "logger.wandb_exp_name": "derived:run_dir",
        "logger.wandb_save_dir": "derived:run_dir",
        "logger.mlflow_run_name": "derived:run_dir",
        "logger.mlflow_tracking_uri": "derived:run_dir",
        "logger.mlflow_log_artifacts": "derived:local store: checkpoints stay in checkpoint.save",
    }
    assert tracking.describe(container) == (
        "W&B p/exp1 -> /runs/exp1/wandb (online); MLflow e/exp1 -> file:///runs/exp1/mlruns"
    )


def test_the_users_keys_and_environment_win():
    cfg = user_config(wandb_project="p", wandb_exp_name="mine", mlflow_experiment="e")
    cfg.set("name", "my-exp", "x.yaml:1")
    container = bridge_logger(wandb_project="p", wandb_exp_name="mine", mlflow_experiment="e")
    provenance = Provenance("default")
    environ = {"WANDB_DIR": "/scratch/wandb", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    tracking.fill_defaults(container, cfg, provenance, "/runs/exp1", environ=environ)
    log = container.logger
    assert (log.wandb_exp_name, log.wandb_save_dir) == ("mine", "/scratch/wandb")
    assert (log.mlflow_run_name, log.mlflow_tracking_uri) == ("my-exp", "http://mlflow:5000")
    assert log.mlflow_log_artifacts is True  # a server keeps Bridge's default
    assert provenance.sources == {
        "logger.wandb_save_dir": "env:WANDB_DIR",
        "logger.mlflow_run_name": "derived:name",
        "logger.mlflow_tracking_uri": "env:MLFLOW_TRACKING_URI",
    }


def test_no_tracker_changes_nothing():
    container, provenance = bridge_logger(), Provenance("default")
    tracking.fill_defaults(container, user_config(), provenance, "/runs/exp1", environ={})
    assert container == bridge_logger() and provenance.sources == {}
    assert not tracking.enabled(container) and tracking.describe(container) is None
    environ: dict[str, str] = {}
    tracking.prepare_environment(container, environ)
    assert environ == {}


def test_a_file_store_is_allowed_for_mlflow_3_unless_the_user_chose():
    local = bridge_logger(mlflow_experiment="e", mlflow_tracking_uri="file:///runs/exp1/mlruns")
    environ: dict[str, str] = {}
    tracking.prepare_environment(local, environ)
    assert environ == {"MLFLOW_ALLOW_FILE_STORE": "true"}
    environ = {"MLFLOW_ALLOW_FILE_STORE": "false"}
    tracking.prepare_environment(local, environ)
    assert environ == {"MLFLOW_ALLOW_FILE_STORE": "false"}
    server, environ = bridge_logger(mlflow_experiment="e", mlflow_tracking_uri="https://mlflow"), {}
    tracking.prepare_environment(server, environ)
    assert environ == {}


def test_params_add_the_primus_keys_and_every_non_default_source():
    view = ResolvedConfig()
    view.set("run_dir", "/runs/exp1", CLI)
    view.set("patches", {"disable": ["a", "b"]}, "x.yaml:3")
    view.set("model", {"num_layers": 2, "hidden_size": 64}, "default")
    view.set("model.num_layers", 2, "x.yaml:5")
    values, sources = tracking.primus_params(view, ("model",))
    assert values == {"run_dir": "/runs/exp1", "patches.disable": ["a", "b"]}
    assert sources == {"run_dir": "cli", "patches.disable": "x.yaml:3", "model.num_layers": "x.yaml:5"}
    assert tracking.mlflow_params(values, sources) == {
        "run_dir": "/runs/exp1",
        "patches.disable": '["a", "b"]',
        "source.run_dir": "cli",
        "source.patches.disable": "x.yaml:3",
        "source.model.num_layers": "x.yaml:5",
    }
    assert tracking.nested(sources) == {
        "run_dir": "cli",
        "patches": {"disable": "x.yaml:3"},
        "model": {"num_layers": "x.yaml:5"},
    }
    assert tracking.nested({"a": 1, "a.b": 2}) == {"a": 1, "a.b": 2}  # a leaf and a prefix at once


def test_the_tracking_extra_is_pinned_the_same_everywhere():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lines = (REPO / "requirements" / "tracking.txt").read_text().splitlines()
    pins = [re.sub(r"\s*#.*", "", line) for line in lines if line and not line.startswith("#")]
    assert sorted(extra["tracking"]) == sorted(pins[:2]) == ["mlflow-skinny==3.17.2", "wandb==0.29.0"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", pin) for pin in pins), pins
    setup = (REPO / "scripts" / "setup_venv.sh").read_text()
    assert "-r requirements/tracking.txt" in setup and "requirements/tracking.txt" in setup.split("START=")[0]
    assert "wandb" not in (REPO / "scripts" / "offline_wheelhouse.sh").read_text()


BLOCKER = """
import importlib.abc, importlib.machinery, sys

class _NoExec(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError(f"{module.__name__} was imported before the tracking check")

class _Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "wandb":
            raise ModuleNotFoundError(f"No module named {name!r}")
        if name.startswith(("megatron.core", "megatron.bridge")):  # found, but never run
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None:
                spec.loader = _NoExec()
            return spec
        return None

sys.meta_path.insert(0, _Guard())
"""


def test_cli_refuses_a_missing_tracker_before_megatron_is_imported(cli, tmp_path):
    """wandb hidden, Megatron unrunnable: the refusal must come before anything imports Megatron."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    out = cli(
        "train",
        "--run_dir",
        str(tmp_path / "run"),
        "logger.wandb_project=demo",
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr == (
        "primus: error: logger.wandb_project (cli): wandb is not installed; pip install -e '.[tracking]'\n"
    )
    assert not (tmp_path / "run").exists()


class FakeWandb:
    def __init__(self, mode: str, run_dir: Path) -> None:
        self.run = SimpleNamespace(settings=SimpleNamespace(mode=mode), dir=str(run_dir))
        self.config = SimpleNamespace(update=lambda values, allow_val_change: self.updates.append(values))
        self.updates: list[dict] = []


class FakeMlflow:
    def __init__(self) -> None:
        self.params: dict = {}
        self.texts: dict = {}

    def log_params(self, params: dict) -> None:
        self.params.update(params)

    def log_text(self, text: str, name: str) -> None:
        self.texts[name] = text

    def active_run(self):
        return SimpleNamespace(info=SimpleNamespace(run_id="r1"))

    def get_tracking_uri(self) -> str:
        return "file:///runs/exp1/mlruns"


def test_the_sources_go_to_the_runs_bridge_started(tmp_path):
    values, sources = {"run_dir": "/runs/exp1"}, {"model.num_layers": "x.yaml:5"}
    files = tmp_path / "offline-run-1" / "files"
    files.mkdir(parents=True)
    wandb, mlflow = FakeWandb("offline", files), FakeMlflow()
    state = SimpleNamespace(wandb_logger=wandb, mlflow_logger=mlflow)
    assert tracking.to_wandb(state, values, sources, "a: 1  # cli\n") == f"W&B run {files.parent}"
    assert wandb.updates == [{"run_dir": "/runs/exp1", "source": {"model": {"num_layers": "x.yaml:5"}}}]
    assert (files / "config.yaml").read_text() == "a: 1  # cli\n"
    assert tracking.to_mlflow(state, values, sources, "a: 1  # cli\n") == (
        "MLflow run r1 in file:///runs/exp1/mlruns"
    )
    assert mlflow.params == {"run_dir": "/runs/exp1", "source.model.num_layers": "x.yaml:5"}
    assert mlflow.texts == {"config.yaml": "a: 1  # cli\n"}
    disabled = SimpleNamespace(wandb_logger=FakeWandb("disabled", files), mlflow_logger=None)
    assert tracking.to_wandb(disabled, values, sources, "") is None  # WANDB_MODE=disabled: nothing
    assert disabled.wandb_logger.updates == [] and tracking.to_mlflow(disabled, values, sources, "") is None
