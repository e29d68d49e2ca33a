"""Precision on the CPU: bf16 autocast computes in bf16, and warns once where the CPU would
only emulate it (slower than fp32)."""

from __future__ import annotations

import logging

import pytest
import torch

from xpretrieval.core import device as device_module
from xpretrieval.core.device import Precision, autocast


@pytest.fixture(autouse=True)
def fresh_warning():
    device_module._warn_emulated_bf16.cache_clear()
    yield
    device_module._warn_emulated_bf16.cache_clear()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_support_warns_once(native, monkeypatch, caplog):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="xpretrieval.core.device"):
        for _ in range(3):
            with autocast(cpu, Precision.bf16):
                product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.bfloat16
    warnings = [r for r in caplog.records if "emulates it" in r.getMessage()]
    assert len(warnings) == (0 if native else 1)


def test_fp32_and_auto_on_the_cpu_compute_in_fp32(caplog):
    for precision in (Precision.fp32, Precision.auto):
        with autocast(torch.device("cpu"), precision):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert not caplog.records
