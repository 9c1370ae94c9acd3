"""Kill after a checkpoint, resume: the loss trajectory equals the uninterrupted run's.

Momentum encoders, queues, the EMA schedule, the sampler and view RNG, the APS chunk position,
optimizer and scheduler states all come back from the checkpoint, which holds only safetensors
and JSON files.
"""

import pytest
import torch

import hf_sslviews
from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.data.sources import prepare_for_views
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

from ..helpers import random_image_dataset

TINY = {"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}, "image_size": 32}
CASES = {
    "mocov3": (dict(projector_hidden_dim=32, projector_dim=16), {}, None),
    "clsa": (dict(projector_hidden_dim=32, projector_dim=16, queue_size=16), {"preset": "single_cifar"}, None),
    "aps": (dict(projector_hidden_dim=32, projector_dim=16, predictor_hidden_dim=32), {}, 2),
    "byol": (dict(projector_hidden_dim=32, projector_dim=16), {}, None),
    "simsiam": (dict(projector_dim=16, predictor_hidden_dim=8), {}, None),
    "patchmix": (dict(projector_hidden_dim=32, projector_dim=16), {}, None),
    "repco": (dict(projector_hidden_dim=32, projector_dim=16, dense_hidden_dim=16, dense_dim=8, queue_size=16), {}, None),
    "mulan": (dict(framework="mocov3", projector_hidden_dim=32, projector_dim=16, predictor_hidden_dim=32), {"preset": "cifar", "n_local": 1, "n_cutout": 1}, None),
}


def _run(method, tmp_path, max_steps, resume=None, **extra_args):
    recipe = hf_sslviews.get_recipe(method)
    config_fields, view_kwargs, chunks = CASES[method]
    torch.manual_seed(0)
    model = recipe.model_class(recipe.config_class(**TINY, **config_fields))
    dataset = prepare_for_views(random_image_dataset(24, size=20)).with_transform(recipe.build_views(model.config, **view_kwargs))
    args = SSLTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=max_steps, learning_rate=1e-3,
        lr_scheduler_type="cosine", warmup_steps=2, logging_steps=1, save_steps=3, report_to="none", use_cpu=True,
        seed=0, data_seed=0, steps_per_batch=chunks, dataloader_drop_last=True, **extra_args,
    )
    trainer = SSLTrainer(model=model, args=args, train_dataset=dataset, data_collator=ViewCollator())
    trainer.train(resume_from_checkpoint=resume)
    losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
    return trainer, losses


@pytest.mark.parametrize("method", sorted(CASES))
def test_resume__loss_trajectory_equals_the_uninterrupted_run(method, tmp_path):
    _, full = _run(method, tmp_path, max_steps=6)
    checkpoint = tmp_path / "out" / "checkpoint-3"
    files = {path.name for path in checkpoint.iterdir()}
    assert {"optimizer.safetensors", "optimizer.json", "scheduler.json", "rng_state.json", "model.safetensors"} <= files
    assert not any(name.endswith((".pt", ".pth", ".bin", ".pkl")) for name in files), files
    resumed_trainer, resumed = _run(method, tmp_path, max_steps=6, resume=str(checkpoint))
    assert resumed_trainer.state.global_step == 6 and {4, 5, 6} <= set(resumed)
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(full[step], rel=1e-5, abs=1e-6), (step, resumed, full)
    if method == "clsa":
        assert int(resumed_trainer.model.queue.queue_ptr) == (6 * 4) % 16


def test_final_save__only_safetensors_and_json(tmp_path):
    trainer, _ = _run("mocov3", tmp_path, max_steps=1)
    trainer.save_model(str(tmp_path / "final"))
    names = {path.name for path in (tmp_path / "final").iterdir()}
    assert "training_args.json" in names and "model.safetensors" in names
    assert all(name.endswith((".json", ".safetensors")) for name in names), names


def test_persistent_workers__every_epoch_gets_its_own_views(tmp_path):
    """A persistent DataLoader worker makes the same views as the main process, epoch after epoch.

    24 images in batches of 4: 6 steps per epoch, so steps 7-12 are epoch 1. Had the worker kept
    epoch 0 (its copy of the transform at start-up), the second epoch's losses would differ.
    """
    _, in_process = _run("mocov3", tmp_path / "main", max_steps=12)
    _, persistent = _run("mocov3", tmp_path / "workers", max_steps=12, dataloader_num_workers=1, dataloader_persistent_workers=True)
    assert set(range(1, 13)) <= set(persistent)
    for step in range(1, 13):
        assert persistent[step] == pytest.approx(in_process[step], rel=1e-5, abs=1e-6), (step, persistent, in_process)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / "optimizer.json").unlink(), "optimizer state"),
        (lambda folder: (folder / "optimizer.safetensors").unlink(), "optimizer state"),
        (lambda folder: (folder / "trainer_state.json").write_text('{"global_step": '), "trainer_state.json"),
        (lambda folder: (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100]), "model.safetensors"),
    ],
    ids=["optimizer_json", "optimizer_tensors", "truncated_trainer_state", "truncated_weights"],
)
def test_resume__an_incomplete_checkpoint_is_an_error_naming_the_part(damage, message, tmp_path):
    _run("byol", tmp_path, max_steps=3)
    checkpoint = tmp_path / "out" / "checkpoint-3"
    damage(checkpoint)
    with pytest.raises(ValueError, match=message):
        _run("byol", tmp_path, max_steps=6, resume=str(checkpoint))


def test_resume__weights_without_the_target_network_are_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    _run("byol", tmp_path, max_steps=3)
    weights = tmp_path / "out" / "checkpoint-3" / "model.safetensors"
    tensors = {name: tensor for name, tensor in load_file(str(weights)).items() if not name.startswith("target_")}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks \d+ of the model's tensors \(in target_"):
        _run("byol", tmp_path, max_steps=6, resume=str(weights.parent))


@pytest.mark.parametrize("device", ["cpu:0", torch.device("cpu", 1)])
def test_load_state__accepts_the_indexed_cpu_device_of_cpu_ddp(tmp_path, device):
    # Under torchrun without a GPU the Trainer's device is "cpu:<rank>"; safetensors refuses
    # that name ("device cpu:0 is invalid") and CPU DDP could not resume.
    from hf_sslviews.training.safetensors_state import load_state, save_state

    state = {"step": 3, "moments": [torch.arange(4.0), torch.ones(2, 2)]}
    save_state(state, tmp_path, "optimizer")
    loaded = load_state(tmp_path, "optimizer", device=device)
    assert loaded["step"] == 3 and torch.equal(loaded["moments"][0], state["moments"][0]) and torch.equal(loaded["moments"][1], state["moments"][1])
