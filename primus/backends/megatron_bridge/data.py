"""``data_path``: Megatron indexed-dataset prefixes, optionally weighted, checked before training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from primus.core.errors import ProblemCollector


@dataclass(frozen=True)
class DataBlend:
    prefixes: list[str]
    weights: list[float] | None

    def as_megatron_blend(self) -> tuple[list[str], list[float] | None]:
        return self.prefixes, self.weights


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_data_path(
    value: str | list | None, source: str | None, problems: ProblemCollector
) -> DataBlend | None:
    """``"a b"`` -> two prefixes; ``"0.7 a 0.3 b"`` -> weighted; None -> mock data.

    Every prefix must have its ``.bin`` and ``.idx`` files; weights must be positive.
    """
    if value is None or value == "" or value == []:
        return None
    tokens = value.split() if isinstance(value, str) else [str(v) for t in value for v in str(t).split()]
    numbers = [_as_float(t) for t in tokens]
    if (
        len(tokens) % 2 == 0
        and all(n is not None for n in numbers[0::2])
        and all(n is None for n in numbers[1::2])
    ):
        weights = [float(n) for n in numbers[0::2]]  # type: ignore[arg-type]
        prefixes = tokens[1::2]
        for w in weights:
            if w <= 0:
                problems.add(f"dataset weight {w} must be positive", key="data_path", source=source)
    elif any(n is not None for n in numbers):
        problems.add(
            f"cannot read {' '.join(tokens)!r} as prefixes or weight/prefix pairs",
            key="data_path",
            source=source,
            hint="write 'pathA pathB' or '0.7 pathA 0.3 pathB'",
        )
        return None
    else:
        weights, prefixes = None, tokens
    for prefix in prefixes:
        missing = [ext for ext in (".bin", ".idx") if not Path(prefix + ext).is_file()]
        if missing:
            problems.add(
                f"dataset prefix {prefix!r} has no {' / '.join(prefix + m for m in missing)}",
                key="data_path",
                source=source,
                hint="give the prefix without extension; create data with `primus data prepare`",
            )
    return DataBlend(prefixes, weights)
