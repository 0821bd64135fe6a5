"""Extracted static subnets keep their state_dict keys and logits: checked against a
reference made with the layout of before static blocks used ``nn.Identity`` for absent
parts (``tests/data/static_subnet_reference.json``), so saved subnets and exports stay valid.

Weights and inputs come from a formula, not from torch's generator, so the reference holds
whatever the torch version. Regenerate (only for an intended layout change) with
``python tests/test_static_reference.py --write``.
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SPACE

from nastools.space import space_from_dict
from nastools.supernet import Supernet

REFERENCE = Path(__file__).parent / "data" / "static_subnet_reference.json"
# (activation, SE gate) per case: every registered activation and gate is covered
CASES = {"swish-hsigmoid": ("swish", "hsigmoid"), "relu-sigmoid": ("relu", "sigmoid"), "hswish-hsigmoid": ("hswish", "hsigmoid")}
# stem 16 -> mb1 8 wide (shortcut conv, no expand conv), twice (identity residual);
# mb2 24 wide, stride 2 (avg-pool + conv shortcut), kernel 5, expand 4, with SE, twice
ARCH = {
    "format": "nastools.arch/1",
    "space": "tiny",
    "resolution": 28,
    "stem": 16,
    "stages": [{"width": 8, "depth": 2, "kernel": 3, "expand": 1}, {"width": 24, "depth": 2, "kernel": 5, "expand": 4}],
    "head": 64,
}


def _case(act: str, gate: str):
    space = space_from_dict({**TINY_SPACE, "act": act, "se": {"ratio": 0.25, "gate": gate, "divisor": 8}})
    net = Supernet(space)
    with torch.no_grad():
        for i, (name, t) in enumerate(net.state_dict().items()):
            if not t.is_floating_point():
                continue
            wave = torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 0.731 + i).reshape(t.shape)
            if name.endswith("running_var"):
                value = 0.75 + 0.5 * wave.abs()
            elif name.endswith("bn.weight") or name.endswith("_bn.weight"):
                value = 1.0 + 0.25 * wave
            else:
                value = wave / math.sqrt(max(1, t[0].numel()))
            t.copy_(value.to(t.dtype))
    arch = space.arch_from_dict(ARCH)
    n = 2 * 28 * 28
    x = torch.cos(torch.arange(n, dtype=torch.float64) * 0.113).reshape(2, 1, 28, 28).float()
    sub = net.eval().extract(arch)
    with torch.no_grad():
        logits = sub(x)
    return sub, logits


def _record(sub, logits) -> dict:
    """What the reference keeps of a subnet: its state_dict keys with their shapes, and its logits."""
    return {"keys": [f"{k} {'x'.join(map(str, v.shape))}" for k, v in sub.state_dict().items()], "logits": logits.tolist()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_extracted_subnet_keys_and_logits_match_the_reference(case):
    want = json.loads(REFERENCE.read_text())[case]
    sub, logits = _case(*CASES[case])
    got = _record(sub, logits)
    assert got["keys"] == want["keys"]  # same names, order and shapes: saved subnets load
    torch.testing.assert_close(logits, torch.tensor(want["logits"]), rtol=1e-5, atol=1e-5)
    sub.load_state_dict(sub.state_dict(), strict=True)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps({c: _record(*_case(*CASES[c])) for c in sorted(CASES)}, indent=1) + "\n")
    print(f"wrote {REFERENCE}")
