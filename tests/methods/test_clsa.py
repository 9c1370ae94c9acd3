"""CLSA: key queue, shuffle-BN, the loss assembly, gradients, save/load and a Trainer run."""

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModelForPreTraining

import hf_sslviews.methods.clsa  # noqa: F401  (registers the recipe and the Auto classes)
from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.methods import get_recipe
from hf_sslviews.modeling.clsa import CLSAConfig, CLSAForPreTraining
from hf_sslviews.modeling.common import distributed
from hf_sslviews.modeling.common.losses.distribution_divergence import ddm_loss
from hf_sslviews.modeling.common.queue import KeyQueue
from hf_sslviews.modeling.common.shuffle_bn import shuffle_bn_forward
from hf_sslviews.training.callbacks import MomentumCallback
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views.clsa import CLSAViewTransform

from ..helpers import random_image_dataset


def make(tiny_vit_kwargs, **overrides):
    torch.manual_seed(0)
    fields = dict(projector_hidden_dim=32, projector_dim=16, queue_size=16)
    fields.update(overrides)
    return CLSAForPreTraining(CLSAConfig(**tiny_vit_kwargs, **fields))


def views(batch=4, strong=1):
    g = torch.Generator().manual_seed(1)
    key = torch.randn(batch, 3, 32, 32, generator=g)
    weak = [torch.randn(batch, 3, 32, 32, generator=g)]
    strong_views = [torch.randn(batch, 3, 16, 16, generator=g) for _ in range(strong)]
    return key, weak, strong_views


# -- KeyQueue -----------------------------------------------------------------------------


def test_key_queue__pointer_wraps_and_oldest_keys_are_replaced():
    queue = KeyQueue(6, 3)
    assert torch.allclose(queue.queue.norm(dim=1), torch.ones(6))  # random unit keys at start
    batches = [torch.full((2, 3), float(i)) for i in range(4)]
    pointers = []
    for keys in batches:
        queue.enqueue(keys)
        pointers.append(int(queue.queue_ptr))
    assert pointers == [2, 4, 0, 2]
    # Batch 3 overwrote batch 0 at rows 0-1; batches 1 and 2 remain at rows 2-5.
    assert queue.queue[:, 0].tolist() == [3.0, 3.0, 1.0, 1.0, 2.0, 2.0]


def test_key_queue__without_divisibility_a_batch_wraps_around_the_end():
    queue = KeyQueue(5, 2)  # the default: batches need not divide the queue
    queue.enqueue(torch.full((3, 2), 1.0))
    queue.enqueue(torch.full((3, 2), 2.0))
    assert int(queue.queue_ptr) == 1
    assert queue.queue[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0, 2.0]


def test_key_queue__a_short_batch_keeps_exactly_the_most_recent_keys():
    # Batches of 4, one shortened to 3 by a skipped image: the queue of 8 must then hold the
    # 8 most recent keys whatever the alignment (MoCo's FIFO), keys numbered in arrival order.
    queue = KeyQueue(8, 1)
    arrived = []
    for size in (4, 4, 3, 4, 4):
        keys = torch.arange(len(arrived), len(arrived) + size, dtype=torch.float32)[:, None]
        arrived += keys[:, 0].tolist()
        queue.enqueue(keys)
        if len(arrived) >= 8:
            assert sorted(queue.queue[:, 0].tolist()) == arrived[-8:]
    assert len(arrived) == 19 and int(queue.queue_ptr) == 19 % 8


@pytest.mark.parametrize("size, batch, match", [(10, 4, "multiple of the global batch"), (4, 8, "at least as large"), (8, 0, None)])
def test_key_queue__bad_batch_sizes_raise(size, batch, match):
    queue = KeyQueue(size, 3, require_divisible=True)
    if batch == 0:
        with pytest.raises(ValueError, match=r"keys must be \[B, 3\]"):
            queue.enqueue(torch.ones(2, 4))
        return
    with pytest.raises(ValueError, match=match):
        queue.enqueue(torch.ones(batch, 3))
    assert int(queue.queue_ptr) == 0


def test_key_queue__buffers_are_in_the_state_dict_and_bank_is_a_copy():
    queue = KeyQueue(4, 2)
    assert set(queue.state_dict()) == {"queue", "queue_ptr"}
    keys = torch.zeros(2, 2)
    bank = queue.bank(keys)
    assert bank.shape == (6, 2) and torch.equal(bank[2:], queue.queue)
    queue.enqueue(torch.ones(2, 2))
    assert not torch.equal(bank[2:4], queue.queue[:2])  # enqueue after bank() leaves the bank as it was


# -- shuffle-BN ---------------------------------------------------------------------------


class _RowEncoder(nn.Module):
    """Per-row map plus the size of the batch it was called with (has a BN layer to count as one)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        flat = x.flatten(1)
        return torch.cat([2 * flat, torch.full_like(flat[:, :1], float(x.shape[0]))], dim=1)


def test_shuffle_bn__one_process_splits_into_sub_batches_and_restores_order():
    encoder = _RowEncoder()
    x = torch.arange(8.0).view(8, 1, 1, 1)
    out = shuffle_bn_forward(encoder, x, num_splits=4)
    assert encoder.calls == [2, 2, 2, 2]
    assert torch.equal(out[:, 0], 2 * torch.arange(8.0))  # each key back at its image's row
    assert torch.all(out[:, 1] == 2)


def test_shuffle_bn__skips_split_without_batch_norm_and_keeps_two_images_per_split():
    linear = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    assert torch.equal(shuffle_bn_forward(linear, x, num_splits=8), linear(x).detach())
    encoder = _RowEncoder()
    shuffle_bn_forward(encoder, torch.zeros(5, 1), num_splits=8)
    assert encoder.calls == [3, 2]  # lowered to 5 // 2 = 2 sub-batches


def test_shuffle_bn__simulated_two_processes_return_own_keys_from_shuffled_slices():
    # Process 1 of 2, local batch 3. The other process sent images x0 and drew permutation p0
    # (rank 0's draw is the one used); its encoded slice comes back in the last gather.
    encoder = _RowEncoder()
    x0, x1 = torch.arange(3.0).view(3, 1) + 10, torch.arange(3.0).view(3, 1) + 20
    images = torch.cat([x0, x1])
    p0 = torch.tensor([4, 0, 5, 2, 1, 3])

    def fake_gather(t):
        if t.dtype == torch.long:
            return torch.cat([p0, torch.randperm(6)])
        if t.shape[1] == 1:
            return images
        return torch.cat([_RowEncoder()(images[p0[:3]]), t])  # rank 0 encoded its slice

    with mock.patch.object(distributed, "world_size", return_value=2), mock.patch.object(distributed, "rank", return_value=1), mock.patch.object(distributed, "gather", side_effect=fake_gather):
        out = shuffle_bn_forward(encoder, x1, num_splits=8)
    assert encoder.calls == [3]  # no further splitting under DDP
    assert torch.equal(out[:, 0], 2 * x1[:, 0])  # this process's own keys, in order


# -- the model ----------------------------------------------------------------------------


def test_clsa__outputs_shapes_and_gradients(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    key, weak, strong = views()
    out = model(key, weak, strong)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.loss.item() == pytest.approx(out.contrastive_loss.item() + out.ddm_loss.item(), rel=1e-6)  # beta = 1
    assert [e.shape for e in out.weak_embeddings] == [(4, 48)] and [e.shape for e in out.strong_embeddings] == [(4, 48)]
    assert out.key_embeddings.shape == (4, 16)
    out.loss.backward()
    online = [p for n, p in model.named_parameters() if n.startswith(("backbone.", "projector."))]
    assert online and all(p.grad is not None for p in online)
    targets = [p for n, p in model.named_parameters() if n.startswith("target_")]
    assert targets and all(p.grad is None and not p.requires_grad for p in targets)


def test_clsa__ddm_term_sends_no_gradient_to_the_weak_view(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    key, weak, strong = views()
    weak[0].requires_grad_(True)
    strong[0].requires_grad_(True)
    out = model(key, weak, strong)
    weak_grad, strong_grad = torch.autograd.grad(out.ddm_loss, [weak[0], strong[0]], allow_unused=True)
    assert weak_grad is None or weak_grad.abs().max() == 0
    assert strong_grad is not None and strong_grad.abs().sum() > 0
    (weak_grad_c,) = torch.autograd.grad(out.contrastive_loss, [weak[0]])
    assert weak_grad_c.abs().sum() > 0  # the weak view does learn, through the contrastive term


def _fixed_model(tiny_vit_kwargs, **overrides):
    """A CLSA model whose queries are the first two 'pixels' and whose keys are injected."""
    model = make(tiny_vit_kwargs, **{"projector_dim": 2, "queue_size": 2, **overrides})
    model._query = lambda x: (x.flatten(1), F.normalize(x.flatten(1), dim=1))
    return model


def test_clsa__total_equals_hand_computed_value(tiny_vit_kwargs):
    model = _fixed_model(tiny_vit_kwargs, loss_temperature=0.5, ddm_weight=0.5)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    model.queue.queue.copy_(torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    weak = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    strong = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(2, 2, 1, 1)
    with mock.patch.object(model, "encode_keys", return_value=keys):
        out = model(torch.zeros(2, 3, 4, 4), weak, strong)
    # bank = [k1, k2, -e1, -e2]; tau = 0.5. Weak row 0 logits [2, 0, -2, 0], positive index 0
    # (row 1 is the same by symmetry).
    log_z = math.log(math.exp(2) + 2 + math.exp(-2))
    contrastive = log_z - 2
    # DDM row 0: p_w = softmax([2, 0, -2, 0]); strong logits [0, 2, 0, -2].
    p_w = [math.exp(v - log_z) for v in (2, 0, -2, 0)]
    log_p_s = [v - log_z for v in (0, 2, 0, -2)]
    divergence = -sum(p * l for p, l in zip(p_w, log_p_s))
    assert out.contrastive_loss.item() == pytest.approx(contrastive, rel=1e-6)
    assert out.ddm_loss.item() == pytest.approx(divergence, rel=1e-6)
    assert out.loss.item() == pytest.approx(contrastive + 0.5 * divergence, rel=1e-6)
    assert torch.equal(model.queue.queue, keys)  # the batch keys were enqueued


@pytest.mark.parametrize("pairing, num_terms", [("all", 4), ("index", 2)])
def test_clsa__multi_view_sums_contrastive_and_ddm_terms(tiny_vit_kwargs, pairing, num_terms):
    model = _fixed_model(tiny_vit_kwargs, ddm_pairing=pairing).eval()
    g = torch.Generator().manual_seed(3)
    keys = F.normalize(torch.randn(2, 2, generator=g), dim=1)
    weak = [torch.randn(2, 2, 1, 1, generator=g) for _ in range(2)]
    strong = [torch.randn(2, 2, 1, 1, generator=g) for _ in range(2)]
    with mock.patch.object(model, "encode_keys", return_value=keys):
        out = model(torch.zeros(2, 3, 4, 4), weak, strong)
    bank = torch.cat([keys, model.queue.queue])
    q = [F.normalize(w.flatten(1), dim=1) for w in weak]
    s = [F.normalize(v.flatten(1), dim=1) for v in strong]
    contrastive = sum(F.cross_entropy(qi @ bank.T / 0.2, torch.arange(2)) for qi in q)
    pairs = [(sj, qi) for qi in q for sj in s] if pairing == "all" else list(zip(s, q))
    assert len(pairs) == num_terms
    divergence = sum(ddm_loss(sj, qi, bank, 0.2) for sj, qi in pairs)
    assert out.contrastive_loss.item() == pytest.approx(contrastive.item(), rel=1e-5)
    assert out.ddm_loss.item() == pytest.approx(divergence.item(), rel=1e-5)


def test_clsa__labels_use_the_global_rank_and_gathered_keys_are_enqueued(tiny_vit_kwargs):
    # Process 1 of 2: its keys are rows 2-3 of the gathered batch, so its labels are [2, 3].
    model = _fixed_model(tiny_vit_kwargs, queue_size=4)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    other = torch.tensor([[0.6, 0.8], [-0.8, 0.6]])
    queue = model.queue.queue.clone()
    with mock.patch.object(model, "encode_keys", return_value=keys), mock.patch.object(distributed, "rank", return_value=1), mock.patch.object(distributed, "gather", return_value=torch.cat([other, keys])):
        out = model(torch.zeros(2, 3, 4, 4), keys.view(2, 2, 1, 1), None)
    bank = torch.cat([other, keys, queue])
    expected = F.cross_entropy(keys @ bank.T / 0.2, torch.tensor([2, 3]))
    wrong_rank = F.cross_entropy(keys @ bank.T / 0.2, torch.tensor([0, 1]))
    assert out.contrastive_loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert abs(expected.item() - wrong_rank.item()) > 0.1
    assert out.ddm_loss.item() == 0.0  # no strong views
    assert torch.equal(model.queue.queue, torch.cat([other, keys]))  # all 4 gathered keys enqueued


def test_clsa__labels_offset_changes_the_loss_as_a_reference_says(tiny_vit_kwargs):
    model = _fixed_model(tiny_vit_kwargs, queue_size=4).eval()
    g = torch.Generator().manual_seed(4)
    keys, other = F.normalize(torch.randn(2, 2, generator=g), dim=1), F.normalize(torch.randn(2, 2, generator=g), dim=1)
    weak = torch.randn(2, 2, 1, 1, generator=g)
    queue = model.queue.queue.clone()
    with mock.patch.object(model, "encode_keys", return_value=keys), mock.patch.object(distributed, "rank", return_value=1), mock.patch.object(distributed, "gather", return_value=torch.cat([other, keys])):
        out = model(torch.zeros(2, 3, 4, 4), weak)
    q = F.normalize(weak.flatten(1), dim=1)
    bank = torch.cat([other, keys, queue])
    expected = F.cross_entropy(q @ bank.T / 0.2, torch.tensor([2, 3]))
    assert out.contrastive_loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(model.queue.queue, queue)  # eval mode: queue untouched


def test_clsa__a_batch_shortened_by_a_skipped_image_trains_and_is_enqueued(tiny_vit_kwargs):
    # One undecodable image makes a batch of 3 where the queue (8) expects batches of 4.
    model = make(tiny_vit_kwargs, queue_size=8)
    model(*views(batch=4))
    key, weak, strong = views(batch=3)
    out = model(key, weak, strong)
    assert torch.isfinite(out.loss)
    assert int(model.queue.queue_ptr) == 7


def test_clsa__resnet_keys_go_through_sub_batch_bn(tiny_vit_kwargs):
    torch.manual_seed(0)
    tiny_resnet = dict(layers=[1, 1, 1, 1], channels=[8, 8, 16, 16], stem_width=8)
    model = CLSAForPreTraining(CLSAConfig(backbone="resnet18", backbone_kwargs=tiny_resnet, image_size=32, projector_dim=8, queue_size=16, shuffle_bn_splits=2))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        whole = F.normalize(model.target_projector(model.target_backbone(x)), dim=1)
        split = model.encode_keys(x)
    assert split.shape == (8, 8) and not torch.allclose(split, whole, atol=1e-4)  # other BN statistics
    out = model(x, [x], [x[:, :, :16, :16]])
    assert torch.isfinite(out.loss)


def test_clsa__update_momentum_moves_target_towards_online(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    before = model.target_projector[0].weight.clone()
    model.update_momentum(0.9)
    assert torch.allclose(model.target_projector[0].weight, 0.9 * before + 0.1 * model.projector[0].weight, atol=1e-6)
    assert model.has_momentum_encoder


def test_clsa__save_load_round_trip_keeps_the_queue(tiny_vit_kwargs, tmp_path):
    model = make(tiny_vit_kwargs)
    key, weak, strong = views()
    model(key, weak, strong)  # training mode: enqueue 4 keys
    assert int(model.queue.queue_ptr) == 4
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert torch.equal(saved["queue.queue"], model.queue.queue) and int(saved["queue.queue_ptr"]) == 4
    assert AutoConfig.from_pretrained(tmp_path).model_type == "sslviews_clsa"
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(reloaded) is CLSAForPreTraining
    assert torch.equal(reloaded.queue.queue, model.queue.queue) and int(reloaded.queue.queue_ptr) == 4
    model.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(model(key, weak, strong).loss, reloaded(key, weak, strong).loss)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(loss_temperature=0.0), "loss_temperature"),
        (dict(queue_size=0), "queue_size"),
        (dict(ddm_weight=-1.0), "ddm_weight"),
        (dict(ddm_pairing="pairs"), "ddm_pairing"),
        (dict(momentum_base=1.5), "momentum"),
        (dict(projector_hidden_dim=0), "projector_hidden_dim"),
    ],
)
def test_clsa_config__validation_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        CLSAConfig(**bad)


def test_clsa_config__defaults_and_json_round_trip(tmp_path):
    config = CLSAConfig()
    assert (config.backbone, config.queue_size, config.loss_temperature, config.ddm_weight, config.momentum_base, config.momentum_final) == ("resnet50", 65536, 0.2, 1.0, 0.999, 0.999)
    CLSAConfig(ddm_weight=0.5, queue_size=1024).save_pretrained(tmp_path)
    again = CLSAConfig.from_pretrained(tmp_path)
    assert (again.ddm_weight, again.queue_size, again.backbone) == (0.5, 1024, "resnet50")


def test_clsa_recipe__presets_build_and_keep_the_queue_divisible():
    recipe = get_recipe("clsa")
    assert recipe.default_preset == "clsa_tiny"
    for name, preset in recipe.presets.items():
        config = CLSAConfig(**preset.config)
        assert config.queue_size % preset.training["per_device_train_batch_size"] == 0, name
        assert preset.training.get("dataloader_drop_last"), name
    single, multi = recipe.presets["clsa_single_imagenet_r50"], recipe.presets["clsa_multi_imagenet_r50"]
    assert single.training["optim_recipe"] == "sgd" and single.training["learning_rate"] == pytest.approx(0.03 * 32 * 8 / 256)
    assert single.training["weight_decay"] == 1e-4 and single.training["num_train_epochs"] == 200
    views = recipe.build_views(CLSAConfig(**multi.config), **multi.views)
    assert [a.size for a in views.strong_views] == [224, 192, 160, 128, 96]


def test_clsa__trainer_steps_update_momentum_queue_and_checkpoint(tiny_vit_kwargs, tmp_path):
    model = make(tiny_vit_kwargs, queue_size=24)
    train = random_image_dataset(16).with_transform(CLSAViewTransform("single_cifar"))
    args = SSLTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2,
        learning_rate=0.03, optim_recipe="sgd", logging_steps=1, save_strategy="steps", save_steps=2, report_to="none",
        use_cpu=True, dataloader_num_workers=0, dataloader_drop_last=True, seed=0,
    )
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MomentumCallback))
    assert callback.num_updates == 2 and callback.last_momentum == pytest.approx(0.999)  # constant momentum
    assert int(model.queue.queue_ptr) == 16  # 4 forwards of 4 keys
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("contrastive_loss" in e and "ddm_loss" in e for e in logged)
    saved = load_file(tmp_path / "out" / "checkpoint-2" / "model.safetensors")
    assert torch.equal(saved["queue.queue"], model.queue.queue) and int(saved["queue.queue_ptr"]) == 16
