"""Worker code of the two-process tests (``tests/training/test_distributed.py``).

Every case is a function of the batch it is given: a worker passes its rank's half of a fixed
batch under a gloo process group, the test passes the whole batch in a single process, and the
results must agree. Inputs come from :func:`make_inputs` (a seeded generator), so both sides see
the same numbers without sending tensors around.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

GLOBAL_BATCH = 8  # per rank 4 on two processes
DIM = 16
TEMPERATURE = 0.2
NUM_GROUPS = 2
QUEUE_SIZE = 16  # a multiple of the global batch (MoCo's rule)
TINY_VIT = dict(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}, image_size=32)


def make_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """The fixed global batch every case slices: embeddings and images, ``GLOBAL_BATCH`` rows."""
    generator = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    return {
        "queries": randn(GLOBAL_BATCH, DIM),
        "keys": randn(GLOBAL_BATCH, DIM),
        "mixed_queries": randn(GLOBAL_BATCH, DIM),
        "mixed_keys": randn(GLOBAL_BATCH, DIM),
        "clsa_key": randn(GLOBAL_BATCH, 3, 32, 32),
        "clsa_weak": randn(GLOBAL_BATCH, 3, 32, 32),
        "clsa_strong": randn(GLOBAL_BATCH, 3, 32, 32),
        "mulan_global": randn(GLOBAL_BATCH, 2, 3, 32, 32),
        "mulan_cutout": randn(GLOBAL_BATCH, 1, 3, 32, 32),
        "view_1": randn(GLOBAL_BATCH, 3, 32, 32),
        "view_2": randn(GLOBAL_BATCH, 3, 32, 32),
        # APS: 4 of the 16 patches (4x4 grid of the tiny ViT) kept per view, one chunk.
        "aps_tokens_1": torch.stack([torch.randperm(16, generator=generator)[:4] for _ in range(GLOBAL_BATCH)]),
        "aps_tokens_2": torch.stack([torch.randperm(16, generator=generator)[:4] for _ in range(GLOBAL_BATCH)]),
    }


def local_slice(tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rows ``rank * N .. (rank + 1) * N`` of the global batch (how a DistributedSampler splits it contiguously here)."""
    n = tensor.shape[0] // world_size
    return tensor[rank * n : (rank + 1) * n]


# ---------------------------------------------------------------------------------------------
# Cases: each takes local tensors and returns a dict of (local) results
# ---------------------------------------------------------------------------------------------


def case_info_nce(queries: torch.Tensor, keys: torch.Tensor, world_size: int) -> dict[str, torch.Tensor]:
    """InfoNCE loss and its gradient w.r.t. the local queries.

    The gradient is that of ``loss / world_size``: the objective of the global batch is the mean
    of the per-rank losses, and keys carry no gradient, so this is the query gradient of the
    single-process loss on the doubled batch (DDP then averages parameter gradients the same way).
    """
    from hf_sslviews.modeling.common.losses import info_nce_loss

    queries = queries.clone().requires_grad_(True)
    loss = info_nce_loss(queries, keys, TEMPERATURE, scale_by_2tau=True, gather_distributed=True)
    (loss / world_size).backward()
    return {"loss": loss.detach(), "query_grad": queries.grad.detach()}


def case_patchmix(queries, keys, mixed_queries, mixed_keys) -> dict[str, torch.Tensor]:
    """PatchMix's three soft-target cross-entropies with targets built for this rank."""
    from hf_sslviews.modeling.common import distributed
    from hf_sslviews.modeling.common.losses.soft_target_cross_entropy import soft_target_cross_entropy
    from hf_sslviews.modeling.patchmix.mixing import patchmix_targets

    targets = patchmix_targets(queries.shape[0], NUM_GROUPS, distributed.rank(), distributed.world_size(), smoothing=0.1)
    return {
        "identity": soft_target_cross_entropy(queries, keys, targets.identity, TEMPERATURE),
        "mix_origin": soft_target_cross_entropy(mixed_queries, keys, targets.mix_origin, TEMPERATURE),
        "mix_mix": soft_target_cross_entropy(mixed_queries, mixed_keys, targets.mix_mix, TEMPERATURE),
        "target_identity": targets.identity,
        "target_mix_origin": targets.mix_origin,
        "target_mix_mix": targets.mix_mix,
    }


def build_clsa():
    from hf_sslviews.modeling.clsa import CLSAConfig, CLSAForPreTraining

    torch.manual_seed(0)  # same weights and same initial queue on every process
    return CLSAForPreTraining(CLSAConfig(**TINY_VIT, projector_hidden_dim=32, projector_dim=16, queue_size=QUEUE_SIZE))


def case_clsa(key, weak, strong) -> dict[str, torch.Tensor]:
    """One training-mode CLSA forward: losses and the queue after it enqueued the gathered keys.

    The ViT backbone and MoCo v2's head have no BatchNorm, so training mode computes the same
    features on half batches as on the whole batch (timm's ViT has no dropout by default).
    """
    model = build_clsa().train()
    initial_queue = model.queue.queue.clone()
    out = model(key_pixel_values=key, weak_pixel_values=[weak], strong_pixel_values=[strong])
    return {
        "loss": out.loss.detach(),
        "contrastive_loss": out.contrastive_loss.detach(),
        "ddm_loss": out.ddm_loss.detach(),
        "queue": model.queue.queue.clone(),
        "queue_ptr": model.queue.queue_ptr.clone(),
        "initial_queue": initial_queue,
    }


def build_mulan():
    from hf_sslviews.modeling.mulan import MulanConfig, MulanForPreTraining

    torch.manual_seed(0)
    config = MulanConfig(framework="mocov3", **TINY_VIT, projector_hidden_dim=32, projector_dim=16, predictor_hidden_dim=32)
    return MulanForPreTraining(config)


def case_mulan(global_views, cutout_views) -> dict[str, torch.Tensor]:
    """MULAN (MoCo v3 framework) loss in eval mode.

    Eval mode: MoCo v3's projector and predictors hold BatchNorm layers, which in training mode
    normalise with the statistics of the *local* batch (DDP does not synchronise them unless the
    model is converted to SyncBatchNorm), so a training-mode loss on half batches legitimately
    differs from the loss on the whole batch. With running statistics the only thing left that
    depends on the process split is the gathered InfoNCE, which is what this case checks.
    """
    model = build_mulan().eval()
    out = model(global_pixel_values=global_views, cutout_pixel_values=cutout_views)
    return {"loss": out.loss.detach(), "global_loss": out.global_loss.detach(), "cutout_loss": out.cutout_loss.detach()}


WHOLE_MODEL_METHODS = ("aps", "byol", "simsiam", "mocov3", "repco")
# Methods whose distributed parts are checked by a loss-level case (case_patchmix, case_clsa,
# case_mulan): their views need batch-level inputs that a whole-model case here does not build.
LOSS_LEVEL_METHODS = ("patchmix", "clsa", "mulan")
COVERED_METHODS = frozenset(WHOLE_MODEL_METHODS + LOSS_LEVEL_METHODS)


def build_method(name: str):
    """A tiny model of ``name``, the same weights on every process."""
    from hf_sslviews.modeling.aps import APSConfig, APSForPreTraining
    from hf_sslviews.modeling.byol import BYOLConfig, BYOLForPreTraining
    from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
    from hf_sslviews.modeling.repco import RepCoConfig, RepCoForPreTraining
    from hf_sslviews.modeling.simsiam import SimSiamConfig, SimSiamForPreTraining

    heads = dict(projector_hidden_dim=32, projector_dim=16)
    torch.manual_seed(0)
    return {
        "aps": lambda: APSForPreTraining(APSConfig(**TINY_VIT, **heads, predictor_hidden_dim=32)),
        "byol": lambda: BYOLForPreTraining(BYOLConfig(**TINY_VIT, **heads)),
        "simsiam": lambda: SimSiamForPreTraining(SimSiamConfig(**TINY_VIT, projector_dim=16, predictor_hidden_dim=8)),
        "mocov3": lambda: MoCoV3ForPreTraining(MoCoV3Config(**TINY_VIT, **heads)),
        "repco": lambda: RepCoForPreTraining(RepCoConfig(**TINY_VIT, **heads, dense_hidden_dim=32, dense_dim=16, queue_size=QUEUE_SIZE * 2)),
    }[name]()


def case_method(name: str, local: dict[str, torch.Tensor], world_size: int) -> dict[str, torch.Tensor]:
    """One training step of a whole model: every loss term, and the gradient DDP would apply.

    The gradient is each process's, summed over processes and divided by their number (what
    DDP's all-reduce does). BatchNorm layers run on their running statistics: with batch
    statistics, half batches legitimately normalise differently from the whole batch unless
    the model uses SyncBatchNorm, which torch implements for GPUs only (benchmarks/gpu_runs.md
    checks that case). Everything else (the gathers with and without gradient, label offsets,
    queues, the symmetrised terms) is exercised as in training.
    """
    import torch.distributed as dist

    model = build_method(name).train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    if name == "aps":
        inputs = dict(pixel_values_1=local["view_1"], pixel_values_2=local["view_2"], token_indices_1=local["aps_tokens_1"], token_indices_2=local["aps_tokens_2"])
    else:
        inputs = dict(pixel_values_1=local["view_1"], pixel_values_2=local["view_2"])
    out = model(**inputs)
    out.loss.backward()
    grads = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])
    if world_size > 1:
        dist.all_reduce(grads)
        grads /= world_size
    result = {key: value.detach() for key, value in out.items() if key == "loss" or key.endswith("_loss")}
    result["grad"] = grads
    if name == "repco":
        result["queue"] = model.queue.queue.clone()
    return result


def run_all_cases(inputs: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, dict[str, torch.Tensor]]:
    """Every case on this rank's slice (``rank=0, world_size=1``: the whole batch)."""
    local = {name: local_slice(tensor, rank, world_size) for name, tensor in inputs.items()}
    results = {
        "info_nce": case_info_nce(local["queries"], local["keys"], world_size),
        "patchmix": case_patchmix(local["queries"], local["keys"], local["mixed_queries"], local["mixed_keys"]),
        "clsa": case_clsa(local["clsa_key"], local["clsa_weak"], local["clsa_strong"]),
        "mulan": case_mulan(local["mulan_global"], local["mulan_cutout"]),
    }
    for name in WHOLE_MODEL_METHODS:
        results[name] = case_method(name, local, world_size)
    return results


def worker(rank: int, world_size: int, init_method: str, out_dir: str) -> None:
    """Entry point of ``torch.multiprocessing.spawn``: run every case, save ``rank<r>.pt``."""
    import torch.distributed as dist

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        from hf_sslviews.modeling.common import distributed

        assert distributed.world_size() == world_size and distributed.rank() == rank
        results = run_all_cases(make_inputs(), rank, world_size)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
        (Path(out_dir) / f"rank{rank}.done").touch()  # every rank has written its results
    finally:
        dist.destroy_process_group()


__all__ = ["GLOBAL_BATCH", "make_inputs", "run_all_cases", "worker", "local_slice"]
