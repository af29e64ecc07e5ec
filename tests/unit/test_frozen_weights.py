"""The frozen-weights guard notices a change of any single bit of any frozen weight."""

from __future__ import annotations

import pytest
import torch

from primus.backends.megatron_bridge.frozen_weights import changed_weights, fingerprint, frozen_fingerprints


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_one_flipped_bit_changes_the_fingerprint(dtype):
    weight = torch.randn(257, 33, generator=torch.Generator().manual_seed(0)).to(dtype)
    before = fingerprint(weight)
    assert fingerprint(weight.clone()) == before
    bits = weight.view(-1).view({2: torch.int16, 4: torch.int32, 8: torch.int64}[weight.element_size()])
    bits[1000] ^= 1  # the lowest mantissa bit of one element
    assert fingerprint(weight) != before


def test_swapped_elements_change_the_fingerprint():
    weight = torch.arange(64, dtype=torch.float32)
    before = fingerprint(weight)
    weight[[3, 40]] = weight[[40, 3]]
    assert fingerprint(weight) != before  # same values, other places


def test_only_frozen_parameters_are_watched():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[0].weight.requires_grad_(False)
    before = frozen_fingerprints([model])
    assert list(before) == ["0.0.weight"]
    with torch.no_grad():
        model[1].weight.add_(1.0)  # a trainable weight: not watched
    assert changed_weights(before, frozen_fingerprints([model])) == []
    with torch.no_grad():
        model[0].weight[0, 0] += 1e-3
    assert changed_weights(before, frozen_fingerprints([model])) == ["0.0.weight"]
