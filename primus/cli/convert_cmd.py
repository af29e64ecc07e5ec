"""`primus convert import|export|verify|list`: HF <-> Megatron checkpoints via Megatron-Bridge."""

from __future__ import annotations

import argparse

from primus.cli.common import backend

EPILOG = """
examples:
  primus convert import --hf ./Llama-3.2-1B --out ./ckpt/llama32_1b
  primus convert export --ckpt ./runs/x/checkpoints --out ./hf_out --hf-source ./Llama-3.2-1B
  primus convert verify --hf ./Llama-3.2-1B --ckpt ./ckpt/llama32_1b
  torchrun --nproc-per-node 2 -m primus convert import --hf DIR --out CKPT --tp 2
      (tp x pp ranks: NCCL on GPUs, gloo on a CPU; verify/export reshard to one process)
Hub ids are read from the local HF cache when HF_HUB_OFFLINE=1.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    p.add_argument(
        "--trust-remote-code",
        "--trust_remote_code",
        dest="trust_remote_code",
        action="store_true",
        help="allow code shipped with the HF model (off by default)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parent = parser._primus_parent  # type: ignore[attr-defined]
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="convert_command", metavar="COMMAND", required=True)

    imp = sub.add_parser("import", help="HF directory -> Megatron torch_dist checkpoint", parents=[parent])
    imp.add_argument("--hf", required=True, metavar="DIR_OR_ID", help="HF model directory (or cached hub id)")
    imp.add_argument("--out", required=True, metavar="CKPT_DIR", help="new checkpoint directory")
    imp.add_argument(
        "--tp", type=int, default=1, help="tensor parallel size (run under torchrun with tp*pp ranks)"
    )
    imp.add_argument(
        "--pp", type=int, default=1, help="pipeline parallel size (run under torchrun with tp*pp ranks)"
    )
    _common(imp)
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="Megatron checkpoint -> HF safetensors + config", parents=[parent])
    exp.add_argument("--ckpt", required=True, metavar="CKPT_DIR", help="checkpoint root or iter_* directory")
    exp.add_argument("--out", required=True, metavar="HF_DIR", help="new HF directory")
    exp.add_argument(
        "--hf-source",
        "--hf_source",
        dest="hf_source",
        metavar="DIR",
        help="HF directory whose config/tokenizer to use (default: the one the checkpoint records)",
    )
    _common(exp)
    exp.set_defaults(func=run_export)

    ver = sub.add_parser(
        "verify",
        help="compare HF and Megatron logits on fixed inputs (exit 1 beyond --atol)",
        parents=[parent],
    )
    ver.add_argument("--hf", required=True, metavar="DIR_OR_ID", help="HF model directory")
    ver.add_argument("--ckpt", required=True, metavar="CKPT_DIR", help="Megatron checkpoint directory")
    ver.add_argument("--atol", type=float, default=1e-4, help="max |logit diff| allowed (fp32; default 1e-4)")
    ver.add_argument("--seq-len", type=int, default=16, help="tokens per sequence (default 16)")
    ver.add_argument("--batch", type=int, default=2, help="sequences (default 2)")
    _common(ver)
    ver.set_defaults(func=run_verify)

    lst = sub.add_parser(
        "list", help="HF architectures the installed Megatron-Bridge converts", parents=[parent]
    )
    lst.set_defaults(func=run_list)


def run_import(args: argparse.Namespace) -> int:
    r = (
        backend()
        .conversion()
        .import_hf(
            args.hf,
            args.out,
            device=args.device,
            tp=args.tp,
            pp=args.pp,
            trust_remote_code=args.trust_remote_code,
        )
    )
    print(f"imported {r.architecture} from {r.source} -> {r.output} ({r.seconds:.1f} s)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    r = (
        backend()
        .conversion()
        .export_hf(
            args.ckpt,
            args.out,
            hf_source=args.hf_source,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
    )
    print(f"exported {r.architecture} from {r.source} -> {r.output} ({r.seconds:.1f} s)")
    if getattr(r, "adapter", None):
        print(f"HF PEFT adapter -> {r.adapter}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    result = (
        backend()
        .conversion()
        .verify(
            args.hf,
            args.ckpt,
            atol=args.atol,
            batch=args.batch,
            seq_len=args.seq_len,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
    )
    print(result.table())
    return 0 if result.ok else 1


def run_list(args: argparse.Namespace) -> int:
    archs = backend().conversion().architectures()
    print("\n".join(archs))
    print(
        f"\n{len(archs)} HF architectures (installed Megatron-Bridge). Convert one: primus convert import --hf DIR"
    )
    return 0
