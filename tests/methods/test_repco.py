"""RepCo (reconstruction): cell-pair selection, patch loss, model, config, recipe."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForPreTraining

import hf_sslviews.methods.repco  # noqa: F401  (registers the recipe and the Auto classes)
from hf_sslviews.modeling.repco import RepCoConfig, RepCoForPreTraining, grid_chebyshev_distance, multi_positive_info_nce, select_patch_pairs
from hf_sslviews.modeling.repco.modeling_repco import moco_queue_loss, pooled_and_cells

SMALL_HEADS = dict(projector_hidden_dim=32, projector_dim=16, dense_hidden_dim=32, dense_dim=16, queue_size=64)
# A 4-stage ResNet with one block per stage, narrow channels and output stride 8: 4x4 cells at 32 px.
TINY_CNN = dict(backbone="resnet18", backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "output_stride": 8}, image_size=32)


def make(backbone_kwargs, **overrides):
    torch.manual_seed(0)
    return RepCoForPreTraining(RepCoConfig(**backbone_kwargs, **{**SMALL_HEADS, **overrides}))


def views(batch=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 3, 32, 32, generator=g)


# --------------------------------------------------------------------------- grid distance


def test_grid_chebyshev_distance__hand_values_on_3x3():
    d = grid_chebyshev_distance(3, 3)
    assert d.shape == (9, 9) and d.dtype == torch.long
    # cell 0 = (0,0); 4 = centre; 8 = (2,2); 2 = (0,2); 5 = (1,2); 7 = (2,1)
    assert d[0].tolist() == [0, 1, 2, 1, 1, 2, 2, 2, 2]
    assert d[4].tolist() == [1] * 4 + [0] + [1] * 4  # the centre touches every cell, diagonals included
    assert d[1, 7] == 2 and d[2, 6] == 2 and d[5, 3] == 2
    assert torch.equal(d, d.T)


def test_grid_chebyshev_distance__matches_slow_reference_on_non_square_grid():
    h, w = 3, 5
    slow = torch.tensor([[max(abs(i // w - j // w), abs(i % w - j % w)) for j in range(h * w)] for i in range(h * w)])
    assert torch.equal(grid_chebyshev_distance(h, w), slow)


# --------------------------------------------------------------------------- pair selection


def hand_grid():
    """3x3 grid, one image. Cell 0 and cell 8 (opposite corners, distance 2) are identical;
    cell 1 (adjacent to 0) is orthogonal to 0; cells 3 and 4 (adjacent to 0) are close to 0;
    cell 2 (far from 0) is a little similar to 0; the rest point elsewhere."""
    a, b, c = torch.eye(3)
    close = F.normalize(torch.tensor([0.9, 0.2, 0.0]), dim=0)  # cos with a: 0.976
    weak = F.normalize(torch.tensor([0.3, 0.0, 1.0]), dim=0)  # cos with a: 0.287
    cells = [a, b, weak, close, close, c, c, -a, a]
    return torch.stack(cells).unsqueeze(0)  # [1, 9, 3]


def slow_select(features, h, w, r_far, k_pos, rule, threshold, k_neg):
    f = F.normalize(features, dim=-1)
    pos = torch.zeros(f.shape[0], h * w, h * w, dtype=torch.bool)
    neg = torch.zeros_like(pos)
    for b in range(f.shape[0]):
        sim = f[b] @ f[b].T
        for i in range(h * w):
            dist = [max(abs(i // w - j // w), abs(i % w - j % w)) for j in range(h * w)]
            far = sorted((j for j in range(h * w) if dist[j] >= r_far), key=lambda j: -sim[i, j].item())
            for j in far[:k_pos]:
                pos[b, i, j] = True
            near = [j for j in range(h * w) if dist[j] == 1]
            if rule == "threshold":
                chosen = [j for j in near if sim[i, j] < threshold]
            else:
                chosen = sorted(near, key=lambda j: sim[i, j].item())[:k_neg]
            for j in chosen:
                neg[b, i, j] = True
    return pos, neg


def test_select_patch_pairs__hand_grid_picks_exactly_the_expected_pairs():
    pos, neg = select_patch_pairs(hand_grid(), (3, 3), r_far=2, num_positives=1, negative_rule="threshold", negative_threshold=0.5)
    assert pos.shape == neg.shape == (1, 9, 9) and pos.dtype == torch.bool
    # cell 0: the identical far cell 8 is its positive; the far cell 2 (cos 0.29) is not
    assert pos[0, 0].nonzero().flatten().tolist() == [8]
    assert pos[0, 8].nonzero().flatten().tolist() == [0]
    # cell 0's neighbours are 1, 3, 4: only the orthogonal cell 1 is below 0.5
    assert neg[0, 0].nonzero().flatten().tolist() == [1]
    # the centre cell has no cell at distance >= 2 on a 3x3 grid: no positive
    assert not pos[0, 4].any()
    # positives are never adjacent, negatives always are, and they never overlap
    d = grid_chebyshev_distance(3, 3)
    assert (d[pos[0]] >= 2).all() and (d[neg[0]] == 1).all() and not (pos & neg).any()


def test_select_patch_pairs__two_positives_and_least_similar_negatives():
    pos, neg = select_patch_pairs(hand_grid(), (3, 3), r_far=2, num_positives=2, negative_rule="least_similar", num_negatives=2)
    # far cells of 0: 2 (0.29), 5 (0), 6 (0), 7 (-1), 8 (1) -> the two most similar are 8 and 2
    assert pos[0, 0].nonzero().flatten().tolist() == [2, 8]
    # neighbours of 0: 1 (0), 3 (0.98), 4 (0.98) -> the two least similar are 1 and one of 3/4
    assert neg[0, 0, 1] and int(neg[0, 0].sum()) == 2 and not neg[0, 0, [0, 2, 5, 6, 7, 8]].any()


@pytest.mark.parametrize("rule", ["threshold", "least_similar"])
@pytest.mark.parametrize("r_far, k_pos", [(2, 1), (2, 3), (3, 2)])
def test_select_patch_pairs__matches_slow_reference(rule, r_far, k_pos):
    features = torch.randn(2, 4 * 5, 6, generator=torch.Generator().manual_seed(0))
    pos, neg = select_patch_pairs(features, (4, 5), r_far=r_far, num_positives=k_pos, negative_rule=rule, negative_threshold=0.1, num_negatives=3)
    ref_pos, ref_neg = slow_select(features, 4, 5, r_far, k_pos, rule, 0.1, 3)
    assert torch.equal(pos, ref_pos)
    assert torch.equal(neg, ref_neg)


def test_select_patch_pairs__positive_threshold_masks_weak_positives():
    pos, _ = select_patch_pairs(hand_grid(), (3, 3), r_far=2, num_positives=2, positive_threshold=0.5)
    assert pos[0, 0].nonzero().flatten().tolist() == [8]  # cell 2 (cos 0.29) dropped
    assert not pos[0, 1].any()  # cell 1's far cells 6, 7, 8 all have cos <= 0 with it


def test_select_patch_pairs__grid_too_small_for_r_far_gives_no_positives():
    pos, neg = select_patch_pairs(torch.randn(3, 4, 8), (2, 2), r_far=2, negative_rule="least_similar")
    assert not pos.any()
    assert neg.sum(-1).eq(2).all()  # every cell still has its two least similar neighbours


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(r_far=1), "r_far"), (dict(negative_rule="random"), "negative_rule"), (dict(num_positives=0), "num_positives")],
)
def test_select_patch_pairs__invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_patch_pairs(torch.randn(1, 9, 4), (3, 3), **kwargs)


def test_select_patch_pairs__no_gradient():
    features = torch.randn(1, 9, 4, requires_grad=True)
    pos, neg = select_patch_pairs(features, (3, 3))
    assert not pos.requires_grad and not neg.requires_grad


# --------------------------------------------------------------------------- patch loss


def tiny_patch_case():
    query = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    pos = torch.zeros(1, 3, 3, dtype=torch.bool)
    neg = torch.zeros_like(pos)
    pos[0, 0, 1] = True  # cell 0: positive 1, negative 2
    neg[0, 0, 2] = True
    pos[0, 1, 0] = pos[0, 1, 2] = True  # cell 1: positives 0 and 2, negative 1
    neg[0, 1, 1] = True
    pos[0, 2, 0] = True  # cell 2: a positive but no negative -> masked
    return query, keys, pos, neg


def test_multi_positive_info_nce__hand_computed_value():
    query, keys, pos, neg = tiny_patch_case()
    loss, valid = multi_positive_info_nce(query, keys, pos, neg, temperature=0.5)
    # cell 0: logits q0.k / 0.5 = [2, 0, -2]; -log(e^0 / (e^0 + e^-2)) = log(1 + e^-2)
    # cell 1: logits [0, 2, 0]; each positive: -log(e^0 / (e^0 + e^0 + e^2)) = log(2 + e^2)
    expected = (math.log(1 + math.exp(-2)) + math.log(2 + math.exp(2))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert valid.tolist() == [[True, True, False]]


def slow_multi_positive(query, keys, pos, neg, tau):
    terms = []
    for b in range(query.shape[0]):
        for i in range(query.shape[1]):
            p = pos[b, i].nonzero().flatten().tolist()
            n = neg[b, i].nonzero().flatten().tolist()
            if not p or not n:
                continue
            s = {j: (F.normalize(query[b, i], dim=0) @ F.normalize(keys[b, j], dim=0)).item() / tau for j in p + n}
            denom = sum(math.exp(v) for v in s.values())
            terms.append(sum(-math.log(math.exp(s[j]) / denom) for j in p) / len(p))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_multi_positive_info_nce__matches_slow_reference(tau):
    g = torch.Generator().manual_seed(3)
    query, keys = torch.randn(2, 16, 5, generator=g), torch.randn(2, 16, 5, generator=g)
    pos, neg = select_patch_pairs(keys, (4, 4), num_positives=2, negative_rule="threshold", negative_threshold=0.0)
    loss, valid = multi_positive_info_nce(query, keys, pos, neg, tau)
    assert 0 < int(valid.sum()) < 32  # some cells masked, some kept: both paths exercised
    assert loss.item() == pytest.approx(slow_multi_positive(query, keys, pos, neg, tau), rel=1e-5)


def test_multi_positive_info_nce__masked_cells_get_no_gradient_and_nothing_is_nan():
    query, keys, pos, neg = tiny_patch_case()
    query[0, 1] = torch.tensor([0.6, 0.8])  # off the symmetric axis, so cell 1's gradient is not 0
    query = query.clone().requires_grad_(True)
    neg[0, 0] = False  # cell 0 now masked too; cell 2 has no candidate row at all below
    pos[0, 2] = False
    loss, valid = multi_positive_info_nce(query, keys, pos, neg, 0.5)
    loss.backward()
    assert valid.tolist() == [[False, True, False]]
    assert torch.isfinite(query.grad).all()
    assert query.grad[0, [0, 2]].abs().sum() == 0 and query.grad[0, 1].abs().sum() > 0


def test_multi_positive_info_nce__no_valid_cell_gives_zero_loss_with_graph():
    query = torch.randn(2, 4, 3, requires_grad=True)
    empty = torch.zeros(2, 4, 4, dtype=torch.bool)
    loss, valid = multi_positive_info_nce(query, torch.randn(2, 4, 3), empty, empty, 0.2)
    assert loss.item() == 0.0 and not valid.any()
    loss.backward()
    assert torch.equal(query.grad, torch.zeros_like(query))


def test_moco_queue_loss__hand_computed_value():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # logits [1, 0, -1] / 0.5 = [2, 0, -2], label 0
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert moco_queue_loss(q, k, queue, 0.5).item() == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- model


@pytest.fixture(params=["vit", "cnn"])
def backbone_kwargs(request, tiny_vit_kwargs):
    return tiny_vit_kwargs if request.param == "vit" else {**TINY_CNN, "backbone_kwargs": dict(TINY_CNN["backbone_kwargs"])}


def test_model__outputs_and_online_gradients_only(backbone_kwargs):
    model = make(backbone_kwargs, shuffle_bn_splits=2, patch_negative_rule="least_similar")
    x1, x2 = views()
    out = model(pixel_values_1=x1, pixel_values_2=x2)
    width = model.backbone.num_features
    assert out.embeddings_1.shape == (4, width) and out.dense_embeddings_2.shape == (4, 16, 16)  # 4x4 cells
    assert torch.isfinite(out.loss) and out.patch_loss > 0 and out.global_loss > 0
    assert out.loss.item() == pytest.approx(out.global_loss.item() + out.patch_loss.item(), rel=1e-5)
    assert out.patch_valid_fraction.item() == 1.0  # 4x4 grid: every cell has far cells and neighbours
    out.loss.backward()
    online = [(n, p) for n, p in model.named_parameters() if n.startswith(("backbone.", "projector.", "dense_head."))]
    assert online and all(p.grad is not None for _, p in online)
    assert sum(p.grad.abs().sum() for n, p in online if n.startswith("dense_head.")) > 0
    targets = [p for n, p in model.named_parameters() if n.startswith("target_")]
    assert targets and all(p.grad is None and not p.requires_grad for p in targets)


def test_model__no_gradient_through_the_momentum_branch(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    x1, _ = views()
    pooled, cells = model.encode_keys(x1)
    assert not pooled.requires_grad and not cells.requires_grad
    # The patch loss alone moves the online dense head and backbone, never a target module.
    _, cells_1, grid = pooled_and_cells(model.backbone, x1)
    _, key_cells = model.encode_keys(x1)
    loss, _, _ = model._patch_loss(cells_1, key_cells, grid)
    loss.backward()
    assert model.dense_head[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("target_"))


def test_model__patch_loss_equals_hand_assembled_from_pairs_functions(backbone_kwargs):
    model = make(backbone_kwargs, patch_num_positives=2, patch_negative_threshold=0.9).eval()
    x1, x2 = views()
    with torch.no_grad():
        out = model(x1, x2)
        terms = []
        for x in (x1, x2):
            cells = pooled_and_cells(model.backbone, x)[1]
            key_cells = pooled_and_cells(model.target_backbone, x)[1]
            pos, neg = select_patch_pairs(key_cells, (4, 4), r_far=2, num_positives=2, negative_threshold=0.9)
            terms.append(multi_positive_info_nce(model.dense_head(cells), model.target_dense_head(key_cells), pos, neg, 0.2)[0])
    assert out.patch_loss.item() == pytest.approx(((terms[0] + terms[1]) / 2).item(), rel=1e-5)


def test_model__selection_uses_the_momentum_features(tiny_vit_kwargs, monkeypatch):
    """Pairs are chosen on the momentum backbone's cells of the same view, whatever the online net."""
    import hf_sslviews.modeling.repco.modeling_repco as modeling_repco

    seen = []
    real = modeling_repco.select_patch_pairs
    monkeypatch.setattr(modeling_repco, "select_patch_pairs", lambda features, *a, **k: seen.append(features.clone()) or real(features, *a, **k))
    model = make(tiny_vit_kwargs).eval()
    x1, x2 = views()
    with torch.no_grad():
        model(x1, x2)
        for p in model.backbone.parameters():
            p.mul_(-1.5)
        model(x1, x2)
        expected = [pooled_and_cells(model.target_backbone, x)[1] for x in (x1, x2)]
    assert len(seen) == 4
    for got, want in zip(seen, expected + expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_model__patch_loss_warm_up_counts_optimizer_steps(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, patch_loss_start_step=2, patch_loss_weight=0.5).eval()
    x1, x2 = views()
    with torch.no_grad():
        out = model(x1, x2)
        assert out.patch_loss > 0 and out.loss.item() == pytest.approx(out.global_loss.item(), rel=1e-6)
        model.update_momentum(1.0)
        assert int(model.optimizer_steps) == 1 and not model.patch_loss_active
        model.update_momentum(1.0)
        out = model(x1, x2)
    assert model.patch_loss_active and "optimizer_steps" in model.state_dict()
    assert out.loss.item() == pytest.approx(out.global_loss.item() + 0.5 * out.patch_loss.item(), rel=1e-5)


def test_model__weight_zero_is_global_only_moco_v2(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, patch_loss_weight=0.0)
    assert model.dense_head is None and not any("dense_head" in n for n, _ in model.named_parameters())
    out = model(*views())
    assert out.patch_loss.item() == 0.0 and out.dense_embeddings_1 is None
    assert out.loss.item() == pytest.approx(out.global_loss.item())


def test_model__global_loss_equals_hand_assembled_symmetric_moco_v2(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs).eval()
    x1, x2 = views()
    with torch.no_grad():
        out = model(x1, x2)
        q1, q2 = (F.normalize(model.projector(model.backbone(x)), dim=1) for x in (x1, x2))
        k1, k2 = (F.normalize(model.target_projector(model.target_backbone(x)), dim=1) for x in (x1, x2))
        queue = model.queue.queue
        expected = (moco_queue_loss(q1, k2, queue, 0.2) + moco_queue_loss(q2, k1, queue, 0.2)) / 2
    assert out.global_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_model__queue_takes_both_views_keys_in_training_only(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    x1, x2 = views()
    model.eval()
    with torch.no_grad():
        model(x1, x2)
    assert int(model.queue.queue_ptr) == 0
    model.train()
    before = model.queue.queue.clone()
    with torch.no_grad():
        model(x1, x2)
        k1 = F.normalize(model.target_projector(model.target_backbone(x1)), dim=1)
    assert int(model.queue.queue_ptr) == 8
    assert torch.allclose(model.queue.queue[:4], k1, atol=1e-5)  # view 1's keys first
    assert torch.equal(model.queue.queue[8:], before[8:])


def test_model__update_momentum_moves_every_target_module(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    with torch.no_grad():
        for module in (model.backbone, model.projector, model.dense_head):
            for p in module.parameters():
                p.add_(1.0)
    pairs = [(model.target_backbone.model.patch_embed.proj.weight, model.backbone.model.patch_embed.proj.weight),
             (model.target_projector[0].weight, model.projector[0].weight),
             (model.target_dense_head[2].weight, model.dense_head[2].weight)]
    before = [t.clone() for t, _ in pairs]
    model.update_momentum(0.75)
    for (target, online), old in zip(pairs, before):
        assert torch.allclose(target, 0.75 * old + 0.25 * online, atol=1e-6)


def test_model__save_load_round_trip_through_auto_classes(tiny_vit_kwargs, tmp_path):
    model = make(tiny_vit_kwargs, patch_loss_start_step=3)
    model.update_momentum(0.9)
    model.train()
    with torch.no_grad():
        model(*views())  # moves the queue pointer
    model.eval().save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "sslviews_repco"
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is RepCoForPreTraining
    assert int(reloaded.optimizer_steps) == 1 and int(reloaded.queue.queue_ptr) == 8
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(model(*views()).loss, reloaded(*views()).loss)


# --------------------------------------------------------------------------- config and recipe


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(patch_far_distance=1), "patch_far_distance"),
        (dict(patch_loss_weight=-1.0), "patch_loss_weight"),
        (dict(patch_negative_rule="nearest"), "patch_negative_rule"),
        (dict(patch_selection_features="pixels"), "patch_selection_features"),
        (dict(patch_temperature=0.0), "patch_temperature"),
        (dict(patch_loss_start_step=-1), "patch_loss_start_step"),
        (dict(queue_size=0), "queue_size"),
        (dict(momentum_base=1.5), "momentum"),
    ],
)
def test_config__validation_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        RepCoConfig(**bad)


def test_config__defaults_and_json_round_trip(tmp_path):
    config = RepCoConfig()
    assert (config.backbone, config.queue_size, config.loss_temperature, config.momentum_base) == ("resnet50", 65536, 0.2, 0.999)
    assert (config.patch_far_distance, config.patch_num_positives, config.patch_negative_rule, config.patch_negative_threshold) == (2, 1, "threshold", 0.5)
    RepCoConfig(patch_negative_rule="least_similar", patch_num_negatives=3, patch_loss_weight=0.7).save_pretrained(tmp_path)
    again = RepCoConfig.from_pretrained(tmp_path)
    assert (again.patch_negative_rule, again.patch_num_negatives, again.patch_loss_weight) == ("least_similar", 3, 0.7)


def test_recipe__presets_and_views():
    from hf_sslviews.methods import get_recipe

    recipe = get_recipe("repco")
    assert recipe.default_preset == "repco_tiny"
    assert {"repco_imagenet_r50", "repco_coco_r50"} <= set(recipe.presets)
    imagenet = recipe.presets["repco_imagenet_r50"]
    assert imagenet.training["optim_recipe"] == "sgd" and imagenet.training["learning_rate"] * 256 / 32 / 8 == pytest.approx(0.03)
    assert imagenet.training["weight_decay"] == 1e-4 and imagenet.training["num_train_epochs"] == 200
    tiny = recipe.presets["repco_tiny"]
    config = RepCoConfig(**tiny.config)
    assert config.queue_size % (2 * tiny.training["per_device_train_batch_size"]) == 0
    transform = recipe.build_views(config, **tiny.views)
    assert transform.output_keys == ("pixel_values_1", "pixel_values_2")
    image = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    out = transform.make_views(image)
    assert out["pixel_values_1"].shape == out["pixel_values_2"].shape == (3, 32, 32)


def test_trainer__repco_steps_count_optimizer_steps_and_log_both_terms(tiny_vit_kwargs, tmp_path):
    from hf_sslviews.data.collator import ViewCollator
    from hf_sslviews.methods.repco import build_mocov2_views
    from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

    from ..helpers import random_image_dataset

    model = make(tiny_vit_kwargs, queue_size=48, patch_loss_start_step=2)
    train = random_image_dataset(16).with_transform(build_mocov2_views(model.config, scale=(0.3, 1.0)))
    args = SSLTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0,
        seed=0, remove_unused_columns=False,
    )
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    assert int(model.optimizer_steps) == 2 and model.patch_loss_active  # once per optimizer step, not per micro-batch
    assert int(model.queue.queue_ptr) == 32  # 4 forwards (2 steps x accumulation 2) x 8 keys (both views)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("global_loss" in entry and "patch_loss" in entry for entry in logged)
