"""MULAN: term enumeration, per-task predictors, targets without gradient, frameworks, recipes."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForPreTraining

import hf_sslviews.methods.mulan as mulan_recipe  # noqa: F401  (registers the recipe and the Auto classes)
from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.methods import RECIPES
from hf_sslviews.modeling.common.losses import byol_loss, info_nce_loss, negative_cosine_loss
from hf_sslviews.modeling.mulan import MulanConfig, MulanForPreTraining, mulan_pairs
from hf_sslviews.training.callbacks import MomentumCallback
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

from ..helpers import random_image_dataset

FRAMEWORKS = ["byol", "mocov3", "simsiam"]
SMALL_HEADS = dict(projector_hidden_dim=32, projector_dim=16, predictor_hidden_dim=24)


def make(tiny_vit_kwargs, framework="byol", **overrides):
    torch.manual_seed(0)
    return MulanForPreTraining(MulanConfig(**{**tiny_vit_kwargs, **SMALL_HEADS, "framework": framework, **overrides}))


def views(batch=4, n_local=2, n_cutout=1, local_size=16):
    g = torch.Generator().manual_seed(1)
    return dict(
        global_pixel_values=torch.randn(batch, 2, 3, 32, 32, generator=g),
        local_pixel_values=torch.randn(batch, n_local, 3, local_size, local_size, generator=g) if n_local else None,
        cutout_pixel_values=torch.randn(batch, n_cutout, 3, 32, 32, generator=g) if n_cutout else None,
    )


def grad_norm(module):
    grads = [p.grad.abs().sum() for p in module.parameters() if p.grad is not None]
    return float(sum(grads)) if grads else 0.0


# ----------------------------------------------------------------------------- mulan_pairs


@pytest.mark.parametrize("n_local, n_cutout", [(0, 0), (2, 1), (4, 1), (2, 0), (0, 3)])
def test_mulan_pairs__term_counts_per_task(n_local, n_cutout):
    pairs = mulan_pairs(2, n_local, n_cutout)
    counts = {task: sum(1 for t, _, _ in pairs if t == task) for task in ("global", "local", "cutout")}
    assert counts == {"global": 2, "local": 2 * n_local, "cutout": 2 * n_cutout}
    assert len(set(pairs)) == len(pairs)


def test_mulan_pairs__which_targets_each_view_meets():
    assert mulan_pairs(2, 2, 1) == [
        ("global", 0, 1),
        ("global", 1, 0),  # global_i -> global_j, never itself
        ("local", 0, 0),
        ("local", 0, 1),
        ("local", 1, 0),
        ("local", 1, 1),  # every local -> both globals, no local -> local
        ("cutout", 0, 0),
        ("cutout", 0, 1),  # cutout -> both globals
    ]


def test_mulan_pairs__three_globals_meet_every_other_global():
    pairs = mulan_pairs(3, 1, 0)
    assert [(i, j) for t, i, j in pairs if t == "global"] == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert [(i, j) for t, i, j in pairs if t == "local"] == [(0, 0), (0, 1), (0, 2)]


@pytest.mark.parametrize("args", [(1, 2, 1), (0, 0, 0), (2, -1, 0)])
def test_mulan_pairs__rejects_impossible_counts(args):
    with pytest.raises(ValueError):
        mulan_pairs(*args)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model__outputs_shapes_and_task_losses(framework, tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, framework)
    out = model(**views(n_local=2, n_cutout=1))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(out[k]) and out[k].ndim == 0 for k in ("global_loss", "local_loss", "cutout_loss"))
    assert out.global_embeddings.shape == (4, 2, 48)
    assert out.local_embeddings.shape == (4, 2, 48)  # 16 px locals through the interpolated pos-emb
    assert out.cutout_embeddings.shape == (4, 1, 48)
    w = model.config.task_weights
    expected = w["global"] * out.global_loss + w["local"] * out.local_loss + w["cutout"] * out.cutout_loss
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_model__globals_only_leaves_other_tasks_out(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, "byol")
    out = model(**views(n_local=0, n_cutout=0))
    assert out.local_loss is None and out.cutout_loss is None and out.local_embeddings is None
    assert out.loss.item() == pytest.approx(out.global_loss.item())
    assert "local_loss" not in out.keys()  # the Trainer logs only the terms present
    empty = model(views()["global_pixel_values"], local_pixel_values=torch.zeros(4, 0, 3, 16, 16))
    assert empty.local_loss is None


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model__loss_equals_hand_assembled_pairs(framework, training, tiny_vit_kwargs):
    """Per-view reference (one backbone call per view): each term, each task mean, the weighted
    total; in train mode too, where the heads' BatchNorm uses the statistics of each view."""
    weights = {"global": 0.5, "local": 2.0, "cutout": 1.5}
    model = make(tiny_vit_kwargs, framework, task_weights=weights).train(training)
    with torch.no_grad():
        for p in list(model.backbone.parameters()) + list(model.projector.parameters()):
            p.add_(0.05 * torch.randn_like(p))  # the EMA target now differs from the online net
    x = views(n_local=2, n_cutout=1)
    with torch.no_grad():
        out = model(**x)
        inputs = {"global": x["global_pixel_values"], "local": x["local_pixel_values"], "cutout": x["cutout_pixel_values"]}
        pred = {t: [model.predictors[t](model.projector(model.backbone(v[:, i]))) for i in range(v.shape[1])] for t, v in inputs.items()}
        g = x["global_pixel_values"]
        if framework == "simsiam":
            targets = [model.projector(model.backbone(g[:, j])) for j in range(2)]
        else:
            targets = [model.target_projector(model.target_backbone(g[:, j])) for j in range(2)]
        loss_fn = {"byol": byol_loss, "simsiam": negative_cosine_loss, "mocov3": lambda p, z: info_nce_loss(p, z, 0.2)}[framework]
        tasks = {
            "global": (loss_fn(pred["global"][0], targets[1]) + loss_fn(pred["global"][1], targets[0])) / 2,
            "local": sum(loss_fn(pred["local"][i], targets[j]) for i in range(2) for j in range(2)) / 4,
            "cutout": (loss_fn(pred["cutout"][0], targets[0]) + loss_fn(pred["cutout"][0], targets[1])) / 2,
        }
    for task, value in tasks.items():
        assert out[f"{task}_loss"].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), task
    total = sum(weights[t] * v for t, v in tasks.items())
    assert out.loss.item() == pytest.approx(total.item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model__no_gradient_into_targets(framework, tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, framework)
    x = views()
    for value in x.values():
        value.requires_grad_(True)
    out = model(**x)
    # The local and cutout tasks only reach the globals as targets: no gradient may flow there.
    (out.local_loss + out.cutout_loss).backward()
    assert x["global_pixel_values"].grad is None or x["global_pixel_values"].grad.abs().max() == 0
    assert x["local_pixel_values"].grad.abs().sum() > 0 and x["cutout_pixel_values"].grad.abs().sum() > 0
    targets = [p for n, p in model.named_parameters() if n.startswith("target_")]
    assert bool(targets) == (framework != "simsiam")
    assert all(not p.requires_grad and p.grad is None for p in targets)
    assert grad_norm(model.backbone) > 0 and grad_norm(model.projector) > 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("task", ["global", "local", "cutout"])
def test_model__each_view_type_reaches_only_its_own_predictor(framework, task, tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, framework)
    out = model(**views())
    out[f"{task}_loss"].backward()
    assert sorted(model.predictors) == ["cutout", "global", "local"]
    for name, predictor in model.predictors.items():
        if name == task:
            assert grad_norm(predictor) > 0, name
        else:
            assert grad_norm(predictor) == 0.0, name


def test_model__shared_predictor_ablation_serves_every_view_type(tiny_vit_kwargs):
    separate = make(tiny_vit_kwargs, "byol")
    model = make(tiny_vit_kwargs, "byol", shared_predictor=True)
    assert list(model.predictors) == ["shared"]
    per_predictor = sum(p.numel() for p in separate.predictors["global"].parameters())
    assert sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in model.parameters()) == 2 * per_predictor
    for task in ("global", "local", "cutout"):
        model.zero_grad()
        model(**views())[f"{task}_loss"].backward()
        assert grad_norm(model.predictors["shared"]) > 0, task


def test_model__update_momentum_moves_target_towards_online(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, "byol")
    assert model.has_momentum_encoder
    with torch.no_grad():
        model.projector[0].weight.add_(1.0)
    before = model.target_projector[0].weight.clone()
    model.update_momentum(0.75)
    assert torch.allclose(model.target_projector[0].weight, 0.75 * before + 0.25 * model.projector[0].weight, atol=1e-6)
    simsiam = make(tiny_vit_kwargs, "simsiam")
    assert not simsiam.has_momentum_encoder and not hasattr(simsiam, "target_backbone")
    simsiam.update_momentum(0.5)  # a no-op, not an error


def test_model__resnet_backbone_works_unchanged():
    torch.manual_seed(0)
    config = MulanConfig(backbone="resnet18", backbone_kwargs={}, image_size=32, framework="byol", **SMALL_HEADS)
    model = MulanForPreTraining(config)
    out = model(**views(batch=4, n_local=2, n_cutout=1))
    assert out.global_embeddings.shape == (4, 2, 512) and out.local_embeddings.shape == (4, 2, 512)
    out.loss.backward()
    assert grad_norm(model.backbone) > 0


def test_model__rejects_bad_view_shapes(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    x = views()
    with pytest.raises(ValueError, match="n_global >= 2"):
        model(x["global_pixel_values"][:, :1])
    with pytest.raises(ValueError, match="local_pixel_values"):
        model(x["global_pixel_values"], local_pixel_values=x["local_pixel_values"][:, 0])
    with pytest.raises(ValueError, match="batch size"):
        model(x["global_pixel_values"], cutout_pixel_values=x["cutout_pixel_values"][:2])


def test_model__save_load_round_trip_through_auto_classes(tiny_vit_kwargs, tmp_path):
    model = make(tiny_vit_kwargs, "mocov3", task_weights={"global": 1.0, "local": 0.5, "cutout": 0.25}).eval()
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.model_type == "sslviews_mulan" and config.framework == "mocov3" and config.task_weights["cutout"] == 0.25
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is MulanForPreTraining
    with torch.no_grad():
        assert torch.equal(model(**views()).loss, reloaded(**views()).loss)


# ----------------------------------------------------------------------------- config


def test_config__framework_defaults():
    byol, simsiam, mocov3 = (MulanConfig(framework=f) for f in ("byol", "simsiam", "mocov3"))
    assert (byol.projector_hidden_dim, byol.projector_dim, byol.predictor_hidden_dim) == (4096, 256, 4096)
    assert (simsiam.projector_num_layers, simsiam.projector_dim, simsiam.predictor_hidden_dim) == (3, 2048, 512)
    assert (mocov3.projector_hidden_dim, mocov3.projector_dim) == (4096, 256)
    assert byol.task_weights == {"global": 1.0, "local": 1.0, "cutout": 1.0} == mocov3.task_weights
    assert simsiam.task_weights == pytest.approx({"global": 1 / 3, "local": 1 / 3, "cutout": 1 / 3})


def test_config__paper_head_shapes(tiny_vit_kwargs):
    model = MulanForPreTraining(MulanConfig(**tiny_vit_kwargs, framework="simsiam", projector_hidden_dim=64, projector_dim=64, predictor_hidden_dim=16))
    linears = [m for m in model.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(48, 64), (64, 64), (64, 64)]
    assert not model.projector[-1].affine  # SimSiam: last BN without affine
    pred = [m for m in model.predictors["local"] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias is not None) for m in pred] == [(64, 16, False), (16, 64, True)]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(framework="dino"), "framework"),
        (dict(task_weights={"global": 1.0, "local": 1.0}), "task_weights"),
        (dict(task_weights={"global": 1.0, "local": -1.0, "cutout": 1.0}), "non-negative"),
        (dict(loss_temperature=0.0), "loss_temperature"),
        (dict(momentum_base=0.999, momentum_final=0.99), "momentum"),
        (dict(projector_num_layers=0), "projector_num_layers"),
    ],
)
def test_config__validation_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        MulanConfig(**bad)


# ----------------------------------------------------------------------------- recipe and trainer


def test_recipe__presets_and_paper_numbers():
    recipe = RECIPES["mulan"]
    assert recipe.default_preset == "mulan_tiny"
    tiny = recipe.presets["mulan_tiny"]
    assert tiny.config["backbone_kwargs"]["depth"] == 4 and tiny.views == dict(sizes="cifar", n_local=2, n_cutout=1)
    r50 = recipe.presets["mulan_byol_imagenet_r50"].training
    assert (r50["optim_recipe"], r50["learning_rate"], r50["weight_decay"], r50["num_train_epochs"]) == ("lars", 0.4, 1.5e-6, 200)
    assert r50["warmup_steps"] * 200 == pytest.approx(10)  # 10 warm-up epochs
    vit = recipe.presets["mulan_byol_imagenet_vit_small"]
    assert (vit.training["adam_beta2"], vit.training["weight_decay"], vit.training["max_grad_norm"]) == (0.98, 0.1, 0.5)
    assert vit.config["backbone_kwargs"]["drop_path_rate"] == 0.1 and vit.config["momentum_base"] == 0.998
    frameworks = {name: MulanConfig(**p.config).framework for name, p in recipe.presets.items()}
    assert {"byol", "simsiam", "mocov3"} <= set(frameworks.values())
    assert "@article" in recipe.citation and "2602.05845" in recipe.citation


def test_recipe__views_feed_the_model_through_the_trainer(tiny_vit_kwargs, tmp_path):
    recipe = RECIPES["mulan"]
    model = make(tiny_vit_kwargs, "byol", momentum_base=0.99)
    transform = recipe.build_views(model.config, **recipe.presets["mulan_tiny"].views)
    train = random_image_dataset(16, size=36).with_transform(transform)
    args = SSLTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        adam_beta2=0.98,
        max_grad_norm=0.5,
        seed=0,
    )
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    target_before = model.target_projector[0].weight.clone()
    trainer.train()
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MomentumCallback))
    assert callback.num_updates == 2
    assert not torch.equal(model.target_projector[0].weight, target_before)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all(k in entry for entry in logged for k in ("global_loss", "local_loss", "cutout_loss"))


def test_mulan_simsiam__target_is_the_network_without_drop_path(tiny_vit_kwargs):
    # The official SimSiam target of MULAN is a copy of the network without drop-path: with
    # drop-path on, the targets are a second no-grad pass of the global views with it off.
    kwargs = {**tiny_vit_kwargs, "backbone_kwargs": {**tiny_vit_kwargs["backbone_kwargs"], "drop_path_rate": 0.9}}
    model = make(kwargs, framework="simsiam").train()
    globals_ = views(batch=4)["global_pixel_values"]
    online = [model.projector(h) for h in model._backbone_per_view(model.backbone, globals_)]
    torch.manual_seed(0)
    targets = model._targets(globals_, online)
    probabilities = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert probabilities and all(p > 0 for p in probabilities)  # restored after the target pass
    for m in model.modules():
        if type(m).__name__ == "DropPath":
            m.drop_prob = 0.0
    with torch.no_grad():
        expected = [model.projector(h) for h in model._backbone_per_view(model.backbone, globals_)]
    assert all(not t.requires_grad for t in targets)
    for got, want, with_drop_path in zip(targets, expected, online):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(with_drop_path.detach(), want, atol=1e-3)  # drop-path 0.9 did change the online pass
    # Without drop-path the online projections are the targets (no second pass).
    plain = make(tiny_vit_kwargs, framework="simsiam").train()
    online = [plain.projector(h) for h in plain._backbone_per_view(plain.backbone, globals_)]
    assert all(torch.equal(t, z.detach()) for t, z in zip(plain._targets(globals_, online), online))
