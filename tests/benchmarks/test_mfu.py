"""The MFU benchmark's arithmetic: counted FLOPs, the peak table and the ratio."""

import json
import sys

import pytest
import torch

from ..helpers import load_benchmark

mfu_script = load_benchmark("mfu")


def test_count_step_flops__linear_layer_against_hand_count():
    layer = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(16, 8)  # no gradient for the input: the backward is the weight gradient only
    # forward 2*B*in*out, backward (weight gradient) 2*B*in*out
    assert mfu_script.count_step_flops(lambda: layer(x).sum()) == 2 * (2 * 16 * 8 * 4)


def test_count_step_flops__attention_is_counted_whatever_kernel_the_device_has():
    q = torch.randn(2, 3, 5, 4, requires_grad=True)
    k, v = torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    flops = mfu_script.count_step_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v).sum())
    product = 2 * (2 * 3) * 5 * 7 * 4  # one [5 x 4] @ [4 x 7]-shaped product per batch and head
    # forward: q k^T and attn v; backward (q only needs a gradient): dO v^T and dS k
    assert flops == 4 * product


def test_peak_tflops__specific_names_before_general_ones():
    assert mfu_script.peak_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert mfu_script.peak_tflops("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert mfu_script.peak_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert mfu_script.peak_tflops("Some Future Accelerator") is None


def test_mfu__ratio_and_bad_input():
    # 500 TFLOP in 1 s on a 1000 TFLOP/s device
    assert mfu_script.mfu(500e12, 1.0, 1000e12) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positive"):
        mfu_script.mfu(1.0, 0.0, 1.0)


def test_benchmark_mfu__cpu_smoke_run_writes_report(tmp_path, monkeypatch):
    out = tmp_path / "mfu.json"
    overrides = json.dumps({"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"depth": 1, "img_size": 32, "patch_size": 8}, "image_size": 32, "projector_hidden_dim": 32, "projector_dim": 16})
    argv = ["mfu.py", "--device", "cpu", "--peak_tflops", "1", "--batch", "4", "--warmup", "1", "--steps", "1", "--methods", "byol", "--config_overrides", overrides, "--output", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    mfu_script.main()
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["method"] == "byol" and row["config"]["image_size"] == 32
    assert row["flops_per_step"] > 0
    assert row["mfu"] == pytest.approx(row["flops_per_step"] / row["seconds_per_step"] / 1e12)
