"""One tiny CPU run logging to W&B (offline) and MLflow (a file store) through Megatron-Bridge's
loggers: both hold the loss, gradient norm, learning rate and validation loss of metrics.jsonl at
the same iterations, and the resolved config with the source of each value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

PROJECT = "primus-ci"
TINY = REPO / "primus" / "configs" / "tiny_llama.yaml"


def wandb_records(run_dir: Path) -> tuple[dict, dict[int, dict], dict]:
    """(run record fields, history rows by step, config updates) read with wandb's own reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (path,) = offline.glob("run-*.wandb")
    store = DataStore()
    store.open_for_scan(str(path))
    run, history, config = {}, {}, {}
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"name": record.run.display_name, "project": record.run.project}
            config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            row = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            }
            history.setdefault(row.get("_step", record.history.step.num), {}).update(row)
    return run, history, config


def test_wandb_offline_and_mlflow_file_store_log_the_runs_metrics_and_sources(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    for name in ("WANDB_DIR", "WANDB_API_KEY", "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "wandb-home"  # wandb's caches and settings stay in the test's directory
    env = {
        "WANDB_MODE": "offline",
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_DATA_DIR": str(home / "data"),
    }
    run_dir = tmp_path / "run"
    out = run_cli(
        "train",
        "--config",
        str(TINY),
        "--run_dir",
        str(run_dir),
        f"logger.wandb_project={PROJECT}",
        f"logger.mlflow_experiment={PROJECT}",
        "validation.eval_iters=1",
        "validation.eval_interval=15",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    store = (run_dir / "mlruns").as_uri()
    assert (
        f"  tracking     W&B {PROJECT}/tiny_llama -> {run_dir}/wandb (offline); "
        f"MLflow {PROJECT}/tiny_llama -> {store}"
    ) in out.stderr
    rows = {r["iteration"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}
    assert sorted(rows) == list(range(1, 21)) and rows[15]["validation_loss"] is not None

    # W&B: Bridge's history under the TensorBoard names, Primus's keys and sources in the config
    run, history, config = wandb_records(run_dir)
    assert run == {"name": "tiny_llama", "project": PROJECT}
    for it, row in rows.items():
        assert history[it]["lm loss"] == row["loss"], it
        assert history[it]["grad-norm"] == row["grad_norm"], it
        assert history[it]["learning-rate"] == pytest.approx(row["lr"], rel=1e-6), it  # float32 in Bridge
    assert history[15]["lm loss validation"] == rows[15]["validation_loss"]
    assert config["model"]["num_layers"] == 2  # Bridge's ConfigContainer
    assert config["run_dir"] == str(run_dir) and config["name"] == "tiny_llama"
    assert config["source"]["model"]["num_layers"].endswith("tiny_llama.yaml:5")
    assert config["source"]["validation"]["eval_interval"] == "cli"
    assert config["source"]["logger"]["wandb_save_dir"] == "derived:run_dir"
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert "eval_interval: 15  # cli" in (offline / "files" / "config.yaml").read_text()

    # MLflow: the same metrics at the same steps; Bridge's params plus Primus's
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(PROJECT)
    (tracked,) = client.search_runs([experiment.experiment_id])
    assert tracked.info.run_name == "tiny_llama" and tracked.info.status == "FINISHED"
    run_id = tracked.info.run_id

    def metric(name: str) -> dict[int, list[float]]:
        steps: dict[int, list[float]] = {}
        for m in sorted(client.get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp)):
            steps.setdefault(m.step, []).append(m.value)
        return steps

    assert metric("lm loss") == {it: [row["loss"]] for it, row in rows.items()}
    assert metric("grad-norm") == {it: [row["grad_norm"]] for it, row in rows.items()}
    lr = metric("learning-rate")
    assert all(lr[it] == [pytest.approx(row["lr"], rel=1e-6)] for it, row in rows.items())
    validation = metric("val/lm loss")
    # the last iteration also gets Bridge's test-set evaluation under the same name, after it
    assert (
        validation[15] == [rows[15]["validation_loss"]] and validation[20][0] == rows[20]["validation_loss"]
    )
    params = tracked.data.params
    assert params["model.num_layers"] == "2" and params["run_dir"] == str(run_dir)
    assert params["source.model.num_layers"].endswith("tiny_llama.yaml:5")
    assert params["source.logger.mlflow_experiment"] == "cli"
    assert params["source.logger.mlflow_tracking_uri"] == "derived:run_dir"
    assert params["logger.mlflow_log_artifacts"] == "False"  # no checkpoint copies in the store
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    downloaded = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert "eval_interval: 15  # cli" in downloaded.read_text()
