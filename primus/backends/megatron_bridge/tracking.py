"""Experiment tracking through Megatron-Bridge's own loggers: Weights & Biases and MLflow.

Bridge does the logging: it starts the W&B / MLflow run on the last rank, records its
``ConfigContainer`` as the run's config / params, and logs every metric it writes to TensorBoard
(same names; MLflow's validation loss is ``val/lm loss``). Primus adds what a Primus run needs:

- defaults under the run directory and named after the run, recorded with their source
  (:func:`fill_defaults`): Bridge would put W&B files in ``checkpoint.save/wandb``, give the run
  a random name, refuse MLflow without a run name and use MLflow's own default store;
- a one-line refusal before Megatron is imported when a tracker's package is missing or its keys
  cannot log anything (:func:`check_user_config`);
- the Primus keys and the source of every value that is not Bridge's default, logged once when
  training starts (:func:`make_callback`): ``source.KEY`` params in MLflow, a ``source`` tree in
  W&B's config, and ``config.yaml`` as a file of each run.

Nothing here imports Megatron or the trackers at module level (``primus --help`` stays fast).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from primus.backends.megatron_bridge.config_tree import Provenance, set_path
from primus.core.config.resolved import DEFAULT, ResolvedConfig, derived_source
from primus.core.errors import ProblemCollector

logger = logging.getLogger(__name__)

INSTALL = "pip install -e '.[tracking]'"
#: MLflow stores that need SQLAlchemy, which mlflow-skinny (the `tracking` extra) leaves out
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
#: MLflow's limit on a param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
MAX_PARAM_LENGTH = 6000


@dataclass(frozen=True)
class Tracker:
    """One tracker: the key that switches it on, the keys that configure it, its package."""

    label: str
    package: str
    switch: str
    keys: tuple[str, ...]


TRACKERS = (
    Tracker(
        "W&B",
        "wandb",
        "logger.wandb_project",
        ("logger.wandb_exp_name", "logger.wandb_save_dir", "logger.wandb_entity"),
    ),
    Tracker(
        "MLflow",
        "mlflow",
        "logger.mlflow_experiment",
        (
            "logger.mlflow_run_name",
            "logger.mlflow_tracking_uri",
            "logger.mlflow_tags",
            "logger.mlflow_description",
        ),
    ),
)


def env_source(name: str) -> str:
    return f"env:{name}"


def run_name(user: ResolvedConfig, run_dir: str | Path) -> str:
    """The name a tracker shows: the ``name`` key, else the run directory's name."""
    return str(user.get("name", None) or Path(run_dir).name)


def is_local_store(uri: str | None) -> bool:
    """A file store (``file:`` URI or a plain path), which MLflow writes on this machine."""
    return bool(uri) and urlparse(str(uri)).scheme in ("", "file")


def installed(package: str) -> bool:
    """Whether ``package`` can be imported (found without importing it: wandb is slow to import)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _is_set(value: Any) -> bool:
    return value is not None and value != "" and value != {}


def check_user_config(user: ResolvedConfig, environ: Mapping[str, str] | None = None) -> ProblemCollector:
    """A tracker that cannot log, found from the user's keys alone (before Megatron's import).

    Recipes set no tracking keys, so the user's layer decides: a missing package, keys set
    without the key that switches the tracker on (Bridge would log nothing), an empty name
    (Bridge raises mid-setup), a database store without SQLAlchemy.
    """
    environ = os.environ if environ is None else environ
    problems = ProblemCollector()
    for tracker in TRACKERS:
        switch = user.get(tracker.switch, None)
        configured = [k for k in tracker.keys if _is_set(user.get(k, None))]
        if not _is_set(switch):
            for key in configured:
                problems.add(
                    f"is set but {tracker.switch} is not: nothing would be logged to {tracker.label}",
                    key=key,
                    source=user.source_of(key),
                    hint=f"add {tracker.switch}=NAME, or drop {key}",
                )
            continue
        if not installed(tracker.package):
            problems.add(
                f"{tracker.package} is not installed",
                key=tracker.switch,
                source=user.source_of(tracker.switch),
                hint=INSTALL,
            )
        for key in tracker.keys:
            if key.endswith(("_exp_name", "_run_name")) and user.get(key, None) == "":
                problems.add(
                    "is empty",
                    key=key,
                    source=user.source_of(key),
                    hint="name the run, or drop the key (default: the run's name)",
                )
    if _is_set(user.get("logger.mlflow_experiment", None)):
        _check_mlflow_store(user, environ, problems)
    return problems


def _check_mlflow_store(user: ResolvedConfig, environ: Mapping[str, str], problems: ProblemCollector) -> None:
    key = "logger.mlflow_tracking_uri"
    uri, source = user.get(key, None), user.source_of(key)
    if not uri and environ.get("MLFLOW_TRACKING_URI"):
        uri, source = environ["MLFLOW_TRACKING_URI"], env_source("MLFLOW_TRACKING_URI")
    scheme = urlparse(str(uri or "")).scheme.split("+")[0]
    if scheme in DATABASE_SCHEMES and not installed("sqlalchemy"):
        problems.add(
            f"a {scheme} store needs SQLAlchemy, which mlflow-skinny leaves out",
            key=key,
            source=source,
            hint="pip install mlflow (the full package), or use a file: or http(s): tracking URI",
        )


def fill_defaults(
    container: Any,
    user: ResolvedConfig,
    provenance: Provenance,
    run_dir: str | Path,
    environ: Mapping[str, str] | None = None,
) -> None:
    """The tracker keys the user left unset, for a tracker that is on (each with its source).

    W&B writes under the run directory (``RUN/wandb``, or ``$WANDB_DIR``), MLflow into a file
    store there (``file:RUN/mlruns``, or ``$MLFLOW_TRACKING_URI``); both runs are named after
    the Primus run. A local MLflow store does not copy every checkpoint into itself
    (``logger.mlflow_log_artifacts``: Bridge's default is to).
    """
    environ = os.environ if environ is None else environ
    log = container.logger
    name = run_name(user, run_dir)
    name_source = derived_source("name" if user.get("name", None) else "run_dir")

    def default(key: str, value: Any, source: str) -> None:
        if not user.has(key):
            set_path(container, key, value, source, provenance)

    if _is_set(log.wandb_project):
        default("logger.wandb_exp_name", name, name_source)
        if environ.get("WANDB_DIR"):
            default("logger.wandb_save_dir", environ["WANDB_DIR"], env_source("WANDB_DIR"))
        else:
            default("logger.wandb_save_dir", str(run_dir), derived_source("run_dir"))
    if _is_set(log.mlflow_experiment):
        default("logger.mlflow_run_name", name, name_source)
        if environ.get("MLFLOW_TRACKING_URI"):
            default(
                "logger.mlflow_tracking_uri",
                environ["MLFLOW_TRACKING_URI"],
                env_source("MLFLOW_TRACKING_URI"),
            )
        else:
            uri = (Path(run_dir).absolute() / "mlruns").as_uri()
            default("logger.mlflow_tracking_uri", uri, derived_source("run_dir"))
        if is_local_store(log.mlflow_tracking_uri):
            default(
                "logger.mlflow_log_artifacts",
                False,
                derived_source("local store: checkpoints stay in checkpoint.save"),
            )


def enabled(container: Any) -> bool:
    log = container.logger
    return _is_set(log.wandb_project) or _is_set(log.mlflow_experiment)


def describe(container: Any) -> str | None:
    """The summary's ``tracking`` line, or None when no tracker is on."""
    log = container.logger
    parts = []
    if _is_set(log.wandb_project):
        mode = os.environ.get("WANDB_MODE", "online")
        parts.append(f"W&B {log.wandb_project}/{log.wandb_exp_name} -> {log.wandb_save_dir}/wandb ({mode})")
    if _is_set(log.mlflow_experiment):
        parts.append(f"MLflow {log.mlflow_experiment}/{log.mlflow_run_name} -> {log.mlflow_tracking_uri}")
    return "; ".join(parts) or None


def prepare_environment(container: Any, environ: dict[str, str] | None = None) -> None:
    """MLflow 3 refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set (it keeps it in
    maintenance mode); a Primus run writes one by default, so allow it unless the user chose."""
    environ = os.environ if environ is None else environ
    log = container.logger
    if _is_set(log.mlflow_experiment) and is_local_store(log.mlflow_tracking_uri):
        environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


# -- what Primus adds to the run's parameters ----------------------------------------------
def primus_params(view: ResolvedConfig, sections: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the Primus keys' values, ``KEY -> source`` for every value not at Bridge's default).

    Bridge logs the ``ConfigContainer``'s values under the same dotted keys; the Primus keys
    (``run_dir``, ``recipe``...) are not in it.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path, value, source in view.leaves():
        if path.split(".", 1)[0] not in sections:
            values[path] = value
        if source != DEFAULT:
            sources[path] = source
    return values, sources


def _param(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        text = value
    elif value is None:
        text = "None"
    else:
        text = json.dumps(value, default=str)
    return text[:MAX_PARAM_LENGTH] if isinstance(text, str) else text


def mlflow_params(values: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """Flat MLflow params: the Primus keys by name, the sources as ``source.KEY``."""
    params = {key: _param(value) for key, value in values.items()}
    params.update({f"source.{key}": _param(source) for key, source in sources.items()})
    return params


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (W&B shows nested config keys as ``a.b``)."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node, parts = tree, path.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a leaf and a prefix at once: keep the rest dotted
                node[".".join(parts[i:])] = value
                break
            node = child
        else:
            node[parts[-1]] = value
    return tree


def to_wandb(state: Any, values: dict[str, Any], sources: dict[str, str], config_yaml: str) -> str | None:
    """Add the Primus keys and sources to the W&B run Bridge started; where it is, or None."""
    wandb = state.wandb_logger  # Bridge's property: starts the run on the last rank, else None
    if wandb is None or getattr(wandb.run.settings, "mode", None) == "disabled":
        return None
    wandb.config.update({**nested(values), "source": nested(sources)}, allow_val_change=True)
    # every file in the run's files directory is part of the run (uploaded with it)
    (Path(wandb.run.dir) / "config.yaml").write_text(config_yaml, encoding="utf-8")
    return f"W&B run {Path(wandb.run.dir).parent}"


def to_mlflow(state: Any, values: dict[str, Any], sources: dict[str, str], config_yaml: str) -> str | None:
    """The same for Bridge's MLflow run (its params are flat: ``source.KEY``)."""
    mlflow = state.mlflow_logger
    if mlflow is None:
        return None
    mlflow.log_params(mlflow_params(values, sources))
    mlflow.log_text(config_yaml, "config.yaml")
    return f"MLflow run {mlflow.active_run().info.run_id} in {mlflow.get_tracking_uri()}"


def make_callback(view: ResolvedConfig, sections: tuple[str, ...]):
    """A Bridge callback (imported lazily: Bridge is heavy) that logs the provenance once."""
    from megatron.bridge.training.callbacks import Callback

    values, sources = primus_params(view, sections)
    config_yaml = view.to_yaml()

    class TrackingProvenance(Callback):
        def on_train_start(self, context) -> None:
            for label, log in (("W&B", to_wandb), ("MLflow", to_mlflow)):
                try:
                    where = log(context.state, values, sources, config_yaml)
                except Exception as exc:  # a tracker's hiccup must not stop the training it records
                    logger.warning("tracking: %s got no Primus keys and sources: %s", label, exc)
                    continue
                if where:
                    logger.info("tracking: %s (its parameters: the resolved config with sources)", where)

    return TrackingProvenance()
