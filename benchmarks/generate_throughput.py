"""Generation throughput on one GPU: Primus (Megatron-Core's static inference engine, from a
Megatron checkpoint) beside ``transformers`` ``generate()`` on the same weights.

The model is llama32_1b-shaped with random bf16 weights and the fine-tuning bench's tokenizer
(``primus.bench.finetune_data``); it is imported with ``primus convert import`` and generated
from with the inference capability ``primus generate`` uses. Both systems continue the same
random prompts, greedy, always ``--new-tokens`` tokens (no end-of-text stop), batch 1 and 16,
each timed ``--repeats`` times alternating with the other; the table gives the median with
min-max of new tokens per second, and the share of greedy tokens the two agree on (bf16, so
they may part after a near tie).

    python benchmarks/generate_throughput.py --work /tmp/gen --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def build_model(work: Path) -> tuple[Path, Path]:
    from primus.bench.finetune_data import build_finetune_inputs
    from primus.bench.workloads import get_workload
    from primus.cli.common import backend

    workload = get_workload("llama32_1b_lora")
    inputs = build_finetune_inputs(workload.hf_config(2048), workload.records, work / "inputs")
    ckpt = work / "ckpt"
    if not (ckpt / "latest_checkpointed_iteration.txt").is_file():
        backend().conversion().import_hf(
            str(inputs.model_dir), str(ckpt), device="cuda", tp=1, pp=1, trust_remote_code=False
        )
    return inputs.model_dir, ckpt


def timed(fn) -> tuple[float, object]:
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM

    from primus.cli.common import backend
    from primus.core.capabilities import GenerationParams

    hf_dir, ckpt = build_model(a.work)
    params = GenerationParams(max_new_tokens=a.new_tokens, stop_at_eos=False)
    gen = torch.Generator().manual_seed(0)
    results: dict = {"card": torch.cuda.get_device_name(), "new_tokens": a.new_tokens, "rows": []}
    with backend().inference().open_model(ckpt=str(ckpt), device="cuda") as primus:
        vocab = primus.vocab_size
        hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.bfloat16).cuda().eval()
        hf.generation_config.eos_token_id = None
        for batch in a.batches:
            prompts = torch.randint(0, vocab, (batch, a.prompt_tokens), generator=gen)

            def run_primus(prompts=prompts):
                return [c.tokens for c in primus.generate(prompts.tolist(), params)]

            def run_hf(prompts=prompts):
                with torch.no_grad():
                    out = hf.generate(
                        prompts.cuda(),
                        attention_mask=torch.ones_like(prompts).cuda(),
                        max_new_tokens=a.new_tokens,
                        do_sample=False,
                        pad_token_id=0,
                    )
                return out[:, a.prompt_tokens :].tolist()

            run_primus(), run_hf()  # warm-up: allocator, kernels
            times: dict[str, list[float]] = {"primus": [], "transformers": []}
            outputs: dict[str, list] = {}
            for _ in range(a.repeats):
                for name, fn in (("primus", run_primus), ("transformers", run_hf)):
                    seconds, outputs[name] = timed(fn)
                    times[name].append(batch * a.new_tokens / seconds)
            same = sum(
                x == y
                for p_row, h_row in zip(outputs["primus"], outputs["transformers"], strict=True)
                for x, y in zip(p_row, h_row, strict=False)
            )
            row = {
                "batch": batch,
                "agreement": same / (batch * a.new_tokens),
                **{
                    name: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                    for name, v in times.items()
                },
            }
            row["ratio_of_medians"] = row["primus"]["median"] / row["transformers"]["median"]
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    a.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
