"""Two processes (gloo, CPU) against one process with the doubled batch.

The specification: "All losses must be correct under data parallelism: keys gathered from every
process, labels offset by rank * N". The workers (``tests/training/distributed_workers.py``) each take
half of a fixed batch; the mean over ranks of their losses must equal the loss of one process
on the whole batch, to 1e-5. One spawn runs every case (process start-up dominates the cost).

Also here: ``torchrun --nproc_per_node 2 scripts/run_pretrain.py`` finishes and exports the
backbone once.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from hf_sslviews.modeling.patchmix.mixing import identity_targets, mix_mix_targets, mix_origin_targets

from . import distributed_workers as workers

REPO = Path(__file__).resolve().parents[2]
WORLD_SIZE = 2
ATOL = 1e-5

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is not available in this torch build")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_node_results(out_dir: Path) -> None:
    """Two ``torchrun`` launches of one process each, ``--nnodes 2`` with a localhost rendezvous:
    what two machines run, each with its own agent, meeting at node 0's address."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    launches = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1",
             "--master_addr", "127.0.0.1", "--master_port", str(port), str(REPO / "tests" / "training" / "distributed_node.py"), str(out_dir)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in range(WORLD_SIZE)
    ]
    outputs = [launch.communicate(timeout=600)[0] for launch in launches]
    if not all((out_dir / f"rank{rank}.done").exists() for rank in range(WORLD_SIZE)):
        raise AssertionError("a node did not finish:\n" + "\n----\n".join(output[-3000:] for output in outputs))


@pytest.fixture(scope="module", params=["two_processes", "two_nodes"])
def two_process_results(tmp_path_factory, request):
    """``[rank0, rank1]`` results of every case: one ``torch.multiprocessing.spawn`` of two
    processes, or two single-process ``torchrun`` nodes (``--nnodes 2``) on localhost."""
    out_dir = tmp_path_factory.mktemp("ddp")
    if request.param == "two_nodes":
        _two_node_results(out_dir)
        return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers at start-up
    try:
        # A file rendezvous: no port to race other processes for.
        rendezvous = f"file://{out_dir / 'rendezvous'}"
        try:
            torch.multiprocessing.spawn(workers.worker, args=(WORLD_SIZE, rendezvous, str(out_dir)), nprocs=WORLD_SIZE, join=True)
        except torch.multiprocessing.ProcessExitedException:
            # gloo's teardown aborts a process now and then ("terminate called without an active
            # exception") after everything is done. The results count when every rank wrote its
            # file and passed the barrier that follows (the "done" marker); anything else fails.
            if not all((out_dir / f"rank{rank}.done").exists() for rank in range(WORLD_SIZE)):
                raise
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def single_process_results():
    assert not dist.is_initialized()  # the reference must see world_size 1
    return workers.run_all_cases(workers.make_inputs(), rank=0, world_size=1)


def _rank_mean(results, case: str, key: str) -> torch.Tensor:
    return torch.stack([r[case][key] for r in results]).mean()


# -- (a) InfoNCE with rank offsets -----------------------------------------------------------


def test_info_nce__mean_of_rank_losses_equals_single_process_loss(two_process_results, single_process_results):
    expected = single_process_results["info_nce"]["loss"]
    per_rank = [r["info_nce"]["loss"] for r in two_process_results]
    assert torch.allclose(_rank_mean(two_process_results, "info_nce", "loss"), expected, atol=ATOL, rtol=0)
    # Each rank's own loss differs from the global one: the offset labels select its own rows.
    assert not torch.allclose(per_rank[0], per_rank[1], atol=1e-3)


def test_info_nce__query_gradients_match_single_process(two_process_results, single_process_results):
    gathered = torch.cat([r["info_nce"]["query_grad"] for r in two_process_results])
    expected = single_process_results["info_nce"]["query_grad"]
    assert gathered.abs().max() > 1e-4  # not trivially zero
    assert torch.allclose(gathered, expected, atol=ATOL, rtol=0)


# -- (b) PatchMix soft targets over the global batch -----------------------------------------


def test_patchmix__identity_loss_equals_single_process_loss(two_process_results, single_process_results):
    expected = single_process_results["patchmix"]["identity"]
    assert torch.allclose(_rank_mean(two_process_results, "patchmix", "identity"), expected, atol=ATOL, rtol=0)
    # The rows of both ranks' identity targets are the single-process targets of the doubled batch.
    rows = torch.cat([r["patchmix"]["target_identity"] for r in two_process_results])
    assert torch.allclose(rows, identity_targets(workers.GLOBAL_BATCH, smoothing=0.1), atol=1e-7)


@pytest.mark.parametrize("term", ["mix_origin", "mix_mix"])
def test_patchmix__mix_targets_are_block_diagonal_and_loss_matches(two_process_results, term):
    # Mixing pairs images within a process's batch, so the global mix targets are the local ones
    # on the diagonal blocks (not the targets of one batch of 2N, which would wrap at 2N).
    half = workers.GLOBAL_BATCH // WORLD_SIZE
    build = {"mix_origin": mix_origin_targets, "mix_mix": mix_mix_targets}[term]
    block = build(half, workers.NUM_GROUPS)
    expected_targets = torch.block_diag(block, block)
    rows = torch.cat([r["patchmix"][f"target_{term}"] for r in two_process_results])
    assert torch.allclose(rows, expected_targets, atol=1e-7)

    from hf_sslviews.modeling.common.losses.soft_target_cross_entropy import soft_target_cross_entropy

    inputs = workers.make_inputs()
    keys = inputs["keys"] if term == "mix_origin" else inputs["mixed_keys"]
    expected = soft_target_cross_entropy(inputs["mixed_queries"], keys, expected_targets, workers.TEMPERATURE, gather_distributed=False)
    assert torch.allclose(_rank_mean(two_process_results, "patchmix", term), expected, atol=ATOL, rtol=0)


# -- (c) CLSA: queue of gathered keys ---------------------------------------------------------


def test_clsa__queue_is_identical_on_both_ranks_and_equals_single_process_queue(two_process_results, single_process_results):
    rank0, rank1 = (r["clsa"] for r in two_process_results)
    expected = single_process_results["clsa"]
    assert torch.equal(rank0["queue"], rank1["queue"])
    assert torch.allclose(rank0["queue"], expected["queue"], atol=ATOL, rtol=0)
    assert int(rank0["queue_ptr"]) == int(expected["queue_ptr"]) == workers.GLOBAL_BATCH
    # The enqueue did happen: the first global-batch rows changed, the rest did not.
    assert not torch.allclose(rank0["queue"][: workers.GLOBAL_BATCH], rank0["initial_queue"][: workers.GLOBAL_BATCH])
    assert torch.equal(rank0["queue"][workers.GLOBAL_BATCH :], rank0["initial_queue"][workers.GLOBAL_BATCH :])


@pytest.mark.parametrize("term", ["loss", "contrastive_loss", "ddm_loss"])
def test_clsa__mean_of_rank_losses_equals_single_process_loss(two_process_results, single_process_results, term):
    expected = single_process_results["clsa"][term]
    assert torch.allclose(_rank_mean(two_process_results, "clsa", term), expected, atol=ATOL, rtol=0)


# -- (d) MULAN over MoCo v3 ------------------------------------------------------------------


@pytest.mark.parametrize("term", ["loss", "global_loss", "cutout_loss"])
def test_mulan_mocov3__mean_of_rank_losses_equals_single_process_loss(two_process_results, single_process_results, term):
    expected = single_process_results["mulan"][term]
    per_rank = [r["mulan"][term] for r in two_process_results]
    assert torch.allclose(torch.stack(per_rank).mean(), expected, atol=ATOL, rtol=0)
    assert not torch.allclose(per_rank[0], per_rank[1], atol=1e-4)  # the halves really differ


# -- (e) whole models: APS, BYOL, SimSiam, MoCo v3, RepCo --------------------------------------


@pytest.mark.parametrize("method", workers.WHOLE_MODEL_METHODS)
def test_whole_model__two_processes_equal_one_process_with_the_doubled_batch(two_process_results, single_process_results, method):
    expected = single_process_results[method]
    terms = sorted(key for key in expected if key == "loss" or key.endswith("_loss"))
    assert "loss" in terms, terms
    for term in terms:
        # The Trainer logs each term averaged over processes, as it does the loss.
        assert torch.allclose(_rank_mean(two_process_results, method, term), expected[term], atol=ATOL, rtol=0), term
    # The parameter update: DDP's averaged gradient equals the single-process gradient.
    rank0, rank1 = (r[method]["grad"] for r in two_process_results)
    assert torch.equal(rank0, rank1)
    assert expected["grad"].abs().max() > 1e-4
    assert torch.allclose(rank0, expected["grad"], atol=ATOL, rtol=1e-4), (rank0 - expected["grad"]).abs().max()
    if method == "repco":
        # The same keys, in another order: RepCo enqueues both views' keys, gathered per process
        # ([rank 0: view 1, view 2], [rank 1: ...]) where one process writes [view 1, view 2];
        # the order of negatives does not enter the loss. Match rows one to one.
        got, want = two_process_results[0][method]["queue"], expected["queue"]
        distances = torch.cdist(got, want, compute_mode="donot_use_mm_for_euclid_dist")
        assert distances.min(dim=1).values.max() < ATOL * 10
        assert distances.argmin(dim=1).unique().numel() == want.shape[0]
        assert torch.equal(two_process_results[0][method]["queue"], two_process_results[1][method]["queue"])


# -- torchrun smoke ---------------------------------------------------------------------------


def test_run_pretrain__torchrun_two_processes_exports_backbone_once(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",  # torchrun picks a free port itself
        str(REPO / "scripts" / "run_pretrain.py"),
        "--method", "mocov3",
        "--backbone_kwargs", json.dumps({"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}),
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--max_train_samples", "32",
        # No --use_cpu: on a machine without GPU the launch itself means CPU DDP.
        "--knn_eval", "False", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--online_linear_probe", "True",
        "--output_dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (out / "backbone" / "model.safetensors").is_file()
    assert (out / "model.safetensors").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["train"]["epoch"] > 0 and results["backbone_dir"] == str(out / "backbone")
    output = result.stdout + result.stderr
    assert "training with CPU DDP" in output
    # One DDP run, not two single-process runs: the Trainer's progress counts 2 global steps and
    # the logged terms are averaged over the processes like the loss (MoCo v3 has one term).
    logs = [ast.literal_eval(line[line.index("{'loss'"):line.rindex("}") + 1]) for line in output.splitlines() if "{'loss'" in line]
    assert len(logs) == 2
    for entry in logs:
        assert float(entry["contrastive_loss"]) == pytest.approx(float(entry["loss"]), rel=1e-3)
        # The probe's sums go through one reduction per log on every process (one that skipped it would hang the run).
        assert float(entry["online_linear_loss"]) > 0 and 0 <= float(entry["online_linear_train_top1"]) <= 1
    # Written once, by rank 0: one "backbone exported" line, no leftovers of a second writer.
    assert (result.stdout + result.stderr).count("backbone exported to") == 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    # The process group is closed before exit (was: once in five runs rank 1 ended with
    # "terminate called without an active exception", rc 1, after writing everything).
    assert "terminate called" not in output


def test_run_pretrain__torchrun_with_a_skipped_image_keeps_processes_in_step(tmp_path):
    # 15 images and one corrupt file, 2 x 4 per step over the whole folder: one process's batch
    # loses the corrupt image. The gathers need equal shapes (before: "Received data size doesn't
    # match expected size" and a dead run), and CLSA's queue takes the shorter step's keys.
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(15):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:02d}.png")
    (folder / "15.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(REPO / "scripts" / "run_pretrain.py"),
        "--method", "clsa", "--train_dir", str(folder),
        "--backbone_kwargs", json.dumps({"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}),
        "--config_overrides", json.dumps({"queue_size": 16, "projector_dim": 16, "projector_hidden_dim": 32}),
        "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--max_bad_image_fraction", "0.5",
        "--knn_eval", "False", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--output_dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    logs = [ast.literal_eval(line[line.index("{'loss'"):line.rindex("}") + 1]) for line in output.splitlines() if "{'loss'" in line]
    assert len(logs) == 2 and all(math.isfinite(float(entry["loss"])) for entry in logs)
    assert "1 good images were left out of their batch" in output
    assert (out / "backbone" / "model.safetensors").is_file()
