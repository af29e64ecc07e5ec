"""EleutherAI's lm-evaluation-harness on a Primus model: any harness task on a Megatron checkpoint.

:class:`PrimusLM` is the harness's model interface (``loglikelihood``, ``loglikelihood_rolling``,
``generate_until``) over an ``InferenceModel``: log-likelihoods from ``model.logits``, text from
``model.generate`` (Megatron-Core's inference engine; the harness's stop strings cut the text
afterwards). It tokenizes exactly as the harness's own ``hf`` model does (same context /
continuation split, same special tokens, same left truncation), so a task scores the same on a
checkpoint and on its HF export. Tasks come from the harness's library or from YAML files in
``--include-path`` (a local task reads local JSON / JSONL files, no network needed).

Imports ``lm_eval`` (the optional ``eval`` extra); the CLI checks it is installed first.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    postprocess_generated_text,
)

from primus.core.capabilities import GenerationParams, InferenceModel
from primus.core.errors import PrimusUserError, closest

logger = logging.getLogger(__name__)

KEY = "--tasks"


class _DropCustomDatasetNotice(logging.Filter):
    """The harness tells every task with a Python loader (``custom_dataset``, as local tasks
    use) how to pass it arguments; nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


logging.getLogger("lm_eval.api.task").addFilter(_DropCustomDatasetNotice())


def _split(names: str | list[str]) -> list[str]:
    items = [names] if isinstance(names, str) else names
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def resolve_tasks(names: str | list[str], include_path: str | None = None) -> tuple[Any, list[str]]:
    """``(TaskManager, task names)``: every name must be a task, group or tag of the harness or of
    ``include_path``. Only the include path is indexed when it holds every name (the harness's
    own library takes ~10 s to index)."""
    from lm_eval.tasks import TaskManager

    wanted = _split(names)
    if not wanted:
        raise PrimusUserError("no task named", key=KEY, hint="pass --tasks NAME[,NAME]")
    if include_path is not None:
        path = Path(include_path).expanduser()
        if not path.is_dir():
            raise PrimusUserError(
                f"{path} is not a directory",
                key="--include-path",
                hint="give the directory of task YAML files",
            )
        local = TaskManager(include_path=str(path), include_defaults=False)
        if all(name in local.all_tasks for name in wanted):
            return local, wanted
    manager = TaskManager(include_path=str(Path(include_path).expanduser()) if include_path else None)
    known = set(manager.all_tasks)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            near = closest(name, known, n=5)
            hints.append(f"{name!r}: did you mean {', '.join(near)}?" if near else f"{name!r}: nothing close")
        where = f"the harness or {include_path}" if include_path else "the harness (add --include-path DIR)"
        raise PrimusUserError(
            f"unknown task{'s' if len(unknown) > 1 else ''} in {where}: " + "; ".join(hints),
            key=KEY,
            hint="list them with `lm-eval ls tasks`",
        )
    return manager, wanted


def load_tasks(task_manager: Any, names: list[str]) -> list[Any]:
    """The harness's task (or group) objects of ``names``, their data loaded: a task whose data
    cannot be read (no network for a hub dataset, a missing local file) is refused here, before
    the model loads, in one line."""
    loaded: list[Any] = []
    for name in names:
        try:
            found = task_manager.load(name)
        except OSError as exc:  # ConnectionError, FileNotFoundError, the hub's offline errors
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise PrimusUserError(
                f"task {name!r}: its data cannot be loaded ({reason})",
                key=KEY,
                hint="the harness reads a library task's data from the HF hub (cached in "
                "~/.cache/huggingface after one run with network); a local task reads local files "
                "(--include-path)",
            ) from None
        if name in found["groups"]:
            loaded.append(found["groups"][name])
        elif name in found["tasks"]:
            loaded.append(found["tasks"][name])
        else:  # a tag: its tasks
            loaded.extend(found["tasks"].values())
    return loaded


@register_model("primus")
class PrimusLM(TemplateLM):
    """The harness's model interface over a Primus ``InferenceModel`` (built in-process by
    ``primus eval``: ``PrimusLM(model)``, then ``lm_eval.simple_evaluate(model=...)``)."""

    def __init__(
        self,
        model: InferenceModel,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        add_bos_token: bool | None = None,
        seed: int = 1234,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = model.tokenizer
        self.batch_size = max(1, int(batch_size))
        self._max_length = max_length
        self._max_gen_toks = max_gen_toks
        self.add_bos_token = add_bos_token
        self.seed = seed
        self.progress = progress

    # -- tokens, as lm_eval's HFLM makes them ---------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length or self.model.max_sequence_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    def tok_encode(
        self,
        string: str,
        add_special_tokens: bool | None = None,
        left_truncate_len: int | None = None,
        **kwargs: Any,
    ) -> list[int]:
        if add_special_tokens is not None:
            special = {"add_special_tokens": add_special_tokens}
        elif self.add_bos_token is not None:
            special = {"add_special_tokens": self.add_bos_token}
        else:
            special = {}
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        encoding = self.tokenizer.encode(string, **special)
        return encoding[-left_truncate_len:] if left_truncate_len else encoding

    def tok_decode(self, tokens: Any, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # -- scoring --------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not self.progress)

    def _score(self, rows: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Log-likelihood of each continuation after its context, and whether it is greedy."""
        import torch

        inputs, conts = [], []
        for context, continuation in rows:
            whole = (context + continuation)[-(self.max_length + 1) :]
            inputs.append(whole[:-1])
            conts.append(continuation)
        length = max(len(x) for x in inputs)
        batch = torch.zeros(len(rows), length, dtype=torch.long)
        for row, tokens in enumerate(inputs):
            batch[row, : len(tokens)] = torch.tensor(tokens)
        logprobs = torch.log_softmax(self.model.logits(batch).float(), dim=-1)
        out = []
        for row, (tokens, cont) in enumerate(zip(inputs, conts, strict=True)):
            span = logprobs[row, len(tokens) - len(cont) : len(tokens)]  # [cont, vocab]
            target = torch.tensor(cont, device=span.device).unsqueeze(-1)
            greedy = bool((span.argmax(dim=-1) == target.squeeze(-1)).all())
            out.append((float(span.gather(-1, target).sum()), greedy))
        return out

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            scored = self._score([(requests[i][1], requests[i][2]) for i in chunk])
            for i, result in zip(chunk, scored, strict=True):
                results[i] = result
                self.cache_hook.add_partial("loglikelihood", requests[i][0], result)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        totals = []
        for request in requests:
            (string,) = request.args
            windows = map(
                lm_utils.make_disjoint_window,
                lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            )
            scored = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows])
            total = sum(logprob for logprob, _ in scored)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
            totals.append(total)
        return totals

    # -- generation -----------------------------------------------------------------------
    def _params(self, kwargs: dict[str, Any], max_new_tokens: int) -> GenerationParams:
        sample = bool(kwargs.get("do_sample")) and float(kwargs.get("temperature") or 0.0) > 0
        return GenerationParams(
            max_new_tokens=max_new_tokens,
            temperature=float(kwargs["temperature"]) if sample else 0.0,
            top_k=int(kwargs.get("top_k") or 0) if sample else 0,
            top_p=float(kwargs.get("top_p") or 0.0) if sample else 0.0,
            seed=self.seed,
        )

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        out: list[str] = [""] * len(requests)
        for indices in groups.values():
            kwargs = normalize_gen_kwargs(dict(requests[indices[0]].args[1]), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_new = kwargs.pop("max_gen_toks")
            room = self.max_length - max_new
            if room <= 0:
                raise PrimusUserError(
                    f"the task asks for {max_new} new tokens and the model's sequence length is {self.max_length}",
                    key=KEY,
                    hint="set a smaller max_gen_toks in the task's generation_kwargs",
                )
            params = self._params(kwargs, max_new)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prompts = [
                    self.tok_encode(requests[i].args[0], left_truncate_len=room) or [self.prefix_token_id]
                    for i in chunk
                ]
                for i, completion in zip(chunk, self.model.generate(prompts, params), strict=True):
                    text = postprocess_generated_text(completion.text, until, None)
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out


def run_tasks(
    model: InferenceModel,
    task_manager: Any,
    tasks: list[Any],
    *,
    batch_size: int = 8,
    limit: int | None = None,
    num_fewshot: int | None = None,
    seed: int = 1234,
    log_samples: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """``lm_eval.simple_evaluate`` of ``tasks`` (names, or :func:`load_tasks`' objects) on ``model``:
    the harness's results dictionary."""
    from unittest import mock

    import lm_eval
    import lm_eval.evaluator

    lm = PrimusLM(model, batch_size=batch_size, seed=seed, progress=progress)
    # the harness's environment report (torch's collect_env, `git describe` in the working
    # directory: seconds, and "fatal: not a git repository" on the console) is left out
    with (
        mock.patch.object(lm_eval.evaluator, "add_env_info", lambda results: None),
        mock.patch.object(lm_eval.evaluator, "get_git_commit_hash", lambda: None),
    ):
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            task_manager=task_manager,
            limit=limit,
            num_fewshot=num_fewshot,
            log_samples=log_samples,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    if results is None:  # only on ranks other than 0
        return {}
    return results


def results_table(results: dict[str, Any]) -> str:
    """The harness's own table of the results (task, metric, value, stderr)."""
    return lm_utils.make_table(results)
