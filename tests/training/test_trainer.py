"""SSLTrainer: a few CPU steps with the stock machinery, momentum schedule, logging, guards."""

import pytest
import torch

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from hf_sslviews.modeling.simsiam import SimSiamConfig, SimSiamForPreTraining
from hf_sslviews.training.callbacks import MomentumCallback
from hf_sslviews.training.trainer import BadImageFractionError, NonFiniteLossError, SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset


def _args(tmp_path, **overrides):
    base = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    base.update(overrides)
    return SSLTrainingArguments(**base)


def _mocov3(tiny_vit_kwargs):
    torch.manual_seed(0)
    return MoCoV3ForPreTraining(MoCoV3Config(**tiny_vit_kwargs, projector_hidden_dim=32, projector_dim=16))


def test_trainer__steps_with_grad_accumulation_update_momentum_once_per_optimizer_step(tiny_vit_kwargs, tmp_path):
    model = _mocov3(tiny_vit_kwargs)
    views = two_view_transform(size=32, scale=(0.3, 1.0))
    train = random_image_dataset(24, bad=1).with_transform(views)
    evaluation = random_image_dataset(8, seed=1).with_transform(views)
    target_before = model.target_backbone.model.patch_embed.proj.weight.clone()
    trainer = SSLTrainer(model=model, args=_args(tmp_path), train_dataset=train, eval_dataset=evaluation, data_collator=ViewCollator())
    trainer.train()
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MomentumCallback))
    assert trainer.state.global_step == 3
    assert callback.num_updates == 3  # once per optimizer step, not per micro-batch (6 forwards)
    assert callback.last_momentum == pytest.approx(1.0)  # cosine schedule ends at momentum_final
    assert not torch.equal(model.target_backbone.model.patch_embed.proj.weight, target_before)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("contrastive_loss" in entry and "momentum" in entry for entry in logged)
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and metrics["eval_loss"] > 0
    assert trainer.images_skipped >= 0 and trainer.images_seen == 24  # 6 micro-batches of 4


def test_trainer__undecodable_images_are_counted(tiny_vit_kwargs, tmp_path):
    model = SimSiamForPreTraining(SimSiamConfig(**tiny_vit_kwargs, projector_dim=16, predictor_hidden_dim=4))
    train = random_image_dataset(7, bad=1).with_transform(two_view_transform(size=32))
    args = _args(tmp_path, max_steps=1, gradient_accumulation_steps=1, per_device_train_batch_size=8, max_bad_image_fraction=0.5)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    assert (trainer.images_seen, trainer.images_skipped) == (8, 1)


def test_trainer__too_many_bad_images_stop_with_a_clear_error(tiny_vit_kwargs, tmp_path):
    model = SimSiamForPreTraining(SimSiamConfig(**tiny_vit_kwargs, projector_dim=16, predictor_hidden_dim=4))
    train = random_image_dataset(100, size=8, bad=140).with_transform(two_view_transform(size=32))
    args = _args(tmp_path, max_steps=20, gradient_accumulation_steps=1, per_device_train_batch_size=32)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(BadImageFractionError, match="max_bad_image_fraction"):
        trainer.train()


class _NaNAfterFirstStep(SimSiamForPreTraining):
    calls = 0

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        type(self).calls += 1
        if type(self).calls > 2:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_trainer__nan_loss_stops_before_the_next_checkpoint(tiny_vit_kwargs, tmp_path):
    model = _NaNAfterFirstStep(SimSiamConfig(**tiny_vit_kwargs, projector_dim=16, predictor_hidden_dim=4))
    train = random_image_dataset(32).with_transform(two_view_transform(size=32))
    args = _args(tmp_path, max_steps=6, gradient_accumulation_steps=1, save_strategy="steps", save_steps=1, logging_steps=3)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(NonFiniteLossError, match="checkpoint-2") as info:
        trainer.train()
    assert "between optimizer steps" in str(info.value)
    saved = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("checkpoint-"))
    assert saved == ["checkpoint-1", "checkpoint-2"]


def test_trainer__no_weight_decay_on_biases_norms_and_position_embedding(tiny_vit_kwargs, tmp_path):
    model = _mocov3(tiny_vit_kwargs)
    trainer = SSLTrainer(model=model, args=_args(tmp_path), train_dataset=random_image_dataset(4), data_collator=ViewCollator())
    decay = set(trainer.get_decay_parameter_names(model))
    assert "backbone.model.blocks.0.attn.qkv.weight" in decay
    assert "projector.0.weight" in decay
    for name in ("backbone.model.pos_embed", "backbone.model.cls_token", "backbone.model.blocks.0.attn.qkv.bias", "backbone.model.norm.weight", "projector.1.weight"):
        assert name not in decay


@pytest.mark.parametrize("optim_recipe", ["default", "sgd"])
def test_trainer__predictor_lr_multiplier_scales_only_the_predictor_through_the_schedule(tiny_vit_kwargs, tmp_path, optim_recipe):
    model = _mocov3(tiny_vit_kwargs)
    train = random_image_dataset(8).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    args = _args(tmp_path, predictor_lr_multiplier=10.0, optim_recipe=optim_recipe, warmup_steps=1, lr_scheduler_type="cosine", gradient_accumulation_steps=1)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.create_optimizer_and_scheduler(num_training_steps=3)
    predictor = {id(p) for p in model.predictor.parameters()}
    groups = trainer.optimizer.param_groups
    heads = [g for g in groups if all(id(p) in predictor for p in g["params"])]
    rest = [g for g in groups if not any(id(p) in predictor for p in g["params"])]
    assert len(heads) + len(rest) == len(groups) and heads and rest  # no group mixes the two
    assert sum(len(g["params"]) for g in heads) == len(predictor)
    # Weight decay groups are kept: the predictor's 1-d parameters stay undecayed.
    assert {g["weight_decay"] for g in heads} == {g["weight_decay"] for g in rest}
    seen = []
    for _ in range(2):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        assert all(g["lr"] == pytest.approx(10 * rest[0]["lr"]) for g in heads) and rest[0]["lr"] > 0
        seen.append(rest[0]["lr"])
    assert seen[0] != seen[1]  # the schedule moved both, keeping the ratio


def test_trainer__predictor_lr_multiplier_needs_a_predictor(tiny_vit_kwargs, tmp_path):
    from hf_sslviews.modeling.clsa import CLSAConfig, CLSAForPreTraining

    model = CLSAForPreTraining(CLSAConfig(**tiny_vit_kwargs, projector_hidden_dim=32, projector_dim=16, queue_size=64))
    trainer = SSLTrainer(model=model, args=_args(tmp_path, predictor_lr_multiplier=10.0), train_dataset=random_image_dataset(4), data_collator=ViewCollator())
    with pytest.raises(ValueError, match="no predictor head"):
        trainer.create_optimizer()
    with pytest.raises(ValueError, match="positive"):
        SSLTrainer(model=_mocov3(tiny_vit_kwargs), args=_args(tmp_path, predictor_lr_multiplier=0.0), train_dataset=random_image_dataset(4), data_collator=ViewCollator()).create_optimizer()


@pytest.mark.parametrize("optim_recipe", ["default", "sgd"])
def test_trainer__predictor_constant_lr_holds_the_predictor_while_the_rest_follows_the_schedule(tiny_vit_kwargs, tmp_path, optim_recipe):
    # SimSiam's fix_pred_lr (MULAN's SimSiam recipe): predictor at lr throughout, encoder on a cosine.
    model = _mocov3(tiny_vit_kwargs)
    train = random_image_dataset(8).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    args = _args(tmp_path, predictor_constant_lr=True, optim_recipe=optim_recipe, warmup_steps=1, lr_scheduler_type="cosine", learning_rate=0.05)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    predictor = {id(p) for p in model.predictor.parameters()}
    heads = [g for g in trainer.optimizer.param_groups if g["predictor"]]
    rest = [g for g in trainer.optimizer.param_groups if not g["predictor"]]
    assert heads and rest and sum(len(g["params"]) for g in heads) == len(predictor)
    assert all(g["lr"] == 0.05 for g in heads) and all(g["lr"] == 0.0 for g in rest)  # warm-up step 0
    encoder_rates = []
    for _ in range(3):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        assert all(g["lr"] == pytest.approx(0.05) for g in heads)
        encoder_rates.append(rest[0]["lr"])
    # Cosine after one warm-up step of four: factors 1, (1 + cos(pi / 3)) / 2, (1 + cos(2 pi / 3)) / 2.
    assert encoder_rates[0] == pytest.approx(0.05) and encoder_rates[1] == pytest.approx(0.05 * 0.75) and encoder_rates[2] == pytest.approx(0.05 * 0.25)


def test_trainer__weight_decay_all_parameters_decays_biases_norms_and_position_embeddings(tiny_vit_kwargs, tmp_path):
    model = _mocov3(tiny_vit_kwargs)
    names = [name for name, _ in model.named_parameters()]
    default = SSLTrainer(model=model, args=_args(tmp_path), train_dataset=random_image_dataset(4), data_collator=ViewCollator())
    excluded = set(names) - set(default.get_decay_parameter_names(model))
    assert {"backbone.model.pos_embed", "backbone.model.cls_token"} <= excluded and any(n.endswith(".bias") for n in excluded)
    everything = SSLTrainer(model=model, args=_args(tmp_path, weight_decay_all_parameters=True, weight_decay=0.05), train_dataset=random_image_dataset(4), data_collator=ViewCollator())
    assert everything.get_decay_parameter_names(model) == names
    everything.create_optimizer()
    assert {g["weight_decay"] for g in everything.optimizer.param_groups if g["params"]} == {0.05}


def test_convert_sync_batchnorm__only_under_multi_gpu_data_parallelism(tmp_path):
    from types import SimpleNamespace

    from hf_sslviews.modeling.byol import BYOLConfig, BYOLForPreTraining
    from hf_sslviews.modeling.clsa import CLSAConfig, CLSAForPreTraining
    from hf_sslviews.training.trainer import convert_sync_batchnorm

    kwargs = {"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}, "image_size": 32}
    byol = BYOLForPreTraining(BYOLConfig(**kwargs, projector_hidden_dim=32, projector_dim=16))
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm1d) for m in byol.modules())
    assert batchnorms >= 3  # projector, predictor, target projector
    flags = lambda **k: SimpleNamespace(**{"sync_batchnorm": True, "world_size": 8, "device": torch.device("cuda", 0), **k})  # noqa: E731
    # One process, or the flag off: nothing changes.
    assert convert_sync_batchnorm(byol, flags(world_size=1)) is byol and not any(isinstance(m, torch.nn.SyncBatchNorm) for m in byol.modules())
    assert convert_sync_batchnorm(byol, flags(sync_batchnorm=False)) is byol
    # 8 GPUs: every BatchNorm (the target network's too) becomes SyncBatchNorm, weights kept.
    before = {k: v.clone() for k, v in byol.state_dict().items()}
    converted = convert_sync_batchnorm(byol, flags())
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) == batchnorms
    assert not any(type(m) is torch.nn.BatchNorm1d for m in converted.modules())
    assert all(torch.equal(before[k], v) for k, v in converted.state_dict().items())
    # CPU DDP: torch has no CPU kernels for it; shuffle-BN methods must keep per-process statistics.
    with pytest.raises(ValueError, match=r"--sync_batchnorm needs GPUs.*no cpu kernels"):
        convert_sync_batchnorm(BYOLForPreTraining(BYOLConfig(**kwargs, projector_hidden_dim=32, projector_dim=16)), flags(device=torch.device("cpu")))
    clsa = CLSAForPreTraining(CLSAConfig(**kwargs, projector_hidden_dim=32, projector_dim=16, queue_size=64))
    with pytest.raises(ValueError, match=r"uses shuffle-BN \(MoCo v2\)"):
        convert_sync_batchnorm(clsa, flags())


def test_trainer__last_incomplete_batch_is_dropped_so_batchnorm_heads_never_see_one_image(tmp_path):
    """17 images, batch 8: without drop_last the third batch has 1 image and BYOL's BatchNorm raises."""
    from hf_sslviews.modeling.byol import BYOLConfig, BYOLForPreTraining

    kwargs = {"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}, "image_size": 32}
    model = BYOLForPreTraining(BYOLConfig(**kwargs, projector_hidden_dim=32, projector_dim=16))
    train = random_image_dataset(17).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    args = _args(tmp_path, per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=-1, num_train_epochs=2)
    assert args.dataloader_drop_last
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    assert trainer.state.global_step == 4  # 2 full batches per epoch


def test_trainer__a_training_set_smaller_than_one_batch_is_an_error(tiny_vit_kwargs, tmp_path):
    train = random_image_dataset(5).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    trainer = SSLTrainer(model=_mocov3(tiny_vit_kwargs), args=_args(tmp_path, per_device_train_batch_size=8), train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(ValueError, match="5 images, fewer than one batch .* at most 5"):
        trainer.train()


def test_training_arguments__report_to_a_missing_package_names_the_install_command(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    with pytest.raises(ValueError, match=r'pip install "hf-sslviews\[tensorboard\]"'):
        _args(tmp_path, report_to="tensorboard")
    assert _args(tmp_path, report_to="none").report_to in ([], ["none"], "none")


def test_trainer__a_checkpoint_with_non_finite_weights_is_never_written(tiny_vit_kwargs, tmp_path):
    """lr 1e39: the first loss is finite, the weights after the first step are not."""
    train = random_image_dataset(32).with_transform(two_view_transform(size=32))
    args = _args(tmp_path, max_steps=4, gradient_accumulation_steps=1, save_strategy="steps", save_steps=1, learning_rate=1e39, max_grad_norm=0.0)
    trainer = SSLTrainer(model=_mocov3(tiny_vit_kwargs), args=args, train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(NonFiniteLossError, match="none \\(no checkpoint was saved\\)"):
        trainer.train()
    assert not any(p.name.startswith("checkpoint-") for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(max_steps=0), "nothing would train"),
        (dict(max_steps=-1, num_train_epochs=0), "nothing would train"),
        (dict(max_bad_image_fraction=float("nan")), "max_bad_image_fraction"),
        (dict(max_bad_image_fraction=1.5), "max_bad_image_fraction"),
        (dict(gradient_accumulation_steps=0), "gradient_accumulation_steps"),
        (dict(fp16=True), r"--fp16 needs a GPU; on CPU use --bf16 True"),  # was silently float32
    ],
)
def test_training_arguments__impossible_values_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, **overrides)


def test_bad_fraction_exceeds__under_the_limit_runs_are_not_stopped_by_early_clusters():
    """Simulated shuffles of 400 images checked after every batch of 32 (the issue's setting)."""
    import random

    from hf_sslviews.training.trainer import bad_fraction_exceeds

    def stopped(num_bad, limit=0.01, total=400, batch=32, seed=0):
        rng = random.Random(seed)
        flags = [True] * num_bad + [False] * (total - num_bad)
        rng.shuffle(flags)
        bad = 0
        for start in range(0, total, batch):
            bad += sum(flags[start:start + batch])
            if bad_fraction_exceeds(bad, min(start + batch, total), limit):
                return True
        return False

    assert bad_fraction_exceeds(3, 256, 0.01) is False  # the reported case: 3 bad among the first 256
    for num_bad in (2, 3):  # 0.5% and 0.75% bad: under the 1% limit
        rate = sum(stopped(num_bad, seed=seed) for seed in range(500)) / 500
        assert rate < 0.01, (num_bad, rate)  # the raw-fraction rule stopped 17% and 38% of these
    assert all(stopped(40, seed=seed) for seed in range(100))  # 10% bad: always stopped
    assert bad_fraction_exceeds(1, 1, 0.0) and not bad_fraction_exceeds(0, 1000, 0.0)  # limit 0: the first bad image stops


def test_bad_fraction_exceeds__a_single_early_bad_image_never_stops_a_run():
    from hf_sslviews.training.trainer import bad_fraction_exceeds

    assert not any(bad_fraction_exceeds(1, seen, 0.01) for seen in range(1, 1000))
    assert not bad_fraction_exceeds(9, 20, 0.01)  # fewer than 10 bad images: too few to judge
    assert bad_fraction_exceeds(10, 20, 0.01)
