"""The lightly parity runs' optimizer (``benchmarks/lightly_peer.py``) takes the steps ``SSLTrainer`` takes.

The parity check of the quality protocol says "same optimizer"; these tests hold it to that:
the same weights fed the same batches end in the same weights (float64), gradient clipping
included, whose absence once made the peer's SimSiam differ from ours.
"""

import copy

import pytest
import torch

from hf_sslviews.methods import find_preset
from hf_sslviews.runs.arguments import ModelArguments, build_config
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

from ..helpers import load_benchmark

peer = load_benchmark("lightly_peer")

STEPS, BATCH = 6, 16


def _trained_by_ssl_trainer(model, training: dict, tmp_path):
    """Train ``model`` with SSLTrainer; returns the batches it saw, in order."""
    generator = torch.Generator().manual_seed(1)
    rows = [{name: 3 * torch.randn(3, 28, 28, generator=generator, dtype=torch.float64) for name in ("pixel_values_1", "pixel_values_2")} for _ in range(STEPS * BATCH)]
    seen, forward = [], model.forward

    def recording(**inputs):
        seen.append({name: value.clone() for name, value in inputs.items() if torch.is_tensor(value)})
        return forward(**inputs)

    model.forward = recording
    flags = {key: training[key] for key in ("learning_rate", "weight_decay", "warmup_steps", "lr_scheduler_type", "predictor_lr_multiplier", "max_grad_norm") if key in training}
    args = SSLTrainingArguments(output_dir=str(tmp_path), report_to="none", save_strategy="no", disable_tqdm=True, max_steps=STEPS, per_device_train_batch_size=BATCH, seed=0, **flags)
    SSLTrainer(model=model, args=args, train_dataset=rows, data_collator=lambda batch: {name: torch.stack([row[name] for row in batch]) for name in batch[0]}).train()
    model.forward = forward
    return seen


def _trained_by_peer_loop(model, training: dict, batches):
    optimizer, scheduler = peer.build_optimizer(model, training, STEPS, predictor_prefix="predictor")
    model.train()
    for batch in batches:
        model(**batch).loss.backward()
        peer.optimizer_step(model, optimizer, scheduler, peer.preset_max_grad_norm(training))
    return model


def _max_difference(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("clipping", ["preset", "default"])
def test_peer_loop__same_weights_and_batches_give_ssl_trainers_weights(tmp_path, clipping):
    recipe, preset = find_preset("simsiam_fmnist")  # predictor at 10x the rate, weight decay, warm-up, cosine
    training = dict(preset.training)
    if clipping == "default":
        training.pop("max_grad_norm")  # SSLTrainingArguments' default for both: no clipping
    assert peer.preset_max_grad_norm(training) == {"preset": 1.0, "default": 0.0}[clipping]
    torch.manual_seed(0)
    model = recipe.model_class(build_config(recipe, preset, ModelArguments(method="simsiam", preset="simsiam_fmnist"))).double()
    start = copy.deepcopy(model)

    batches = _trained_by_ssl_trainer(model, training, tmp_path)
    assert len(batches) == STEPS
    twin = _trained_by_peer_loop(copy.deepcopy(start), training, batches)
    assert _max_difference(model, start) > 1e-3  # it trained
    assert _max_difference(model, twin) < 1e-9

    # The clipping is active in this setup (inputs scaled so the first gradient norms exceed 1):
    # without it the peer's weights would differ, so the equality above covers it.
    other = dict(training, max_grad_norm=0.0 if clipping == "preset" else 1.0)
    unmatched = _trained_by_peer_loop(copy.deepcopy(start), other, batches)
    assert _max_difference(model, unmatched) > 1e-4


class _IndexModel(torch.nn.Module):
    """Records the rows each training step sees; its loss only keeps the optimizer busy."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, index):
        self.seen.append(index.tolist())
        return {"loss": (self.weight * index.float()).sum()}


@pytest.mark.parametrize("data_seed", [0, 7])
def test_peer_data_order__trainer_gives_the_batches_ssl_trainer_trains_on(tmp_path, data_seed):
    rows = [{"index": i} for i in range(10)]  # 3 batches of 3 per epoch (drop-last); 7 steps reach epoch 2
    collate = lambda batch: {"index": torch.tensor([row["index"] for row in batch])}  # noqa: E731
    model = _IndexModel()
    args = SSLTrainingArguments(output_dir=str(tmp_path), report_to="none", save_strategy="no", disable_tqdm=True, max_steps=7,
                                per_device_train_batch_size=3, dataloader_drop_last=True, seed=123, data_seed=data_seed)
    SSLTrainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()

    def first_steps(order: str) -> list:
        loader = peer.train_loader(rows, 3, collate, data_seed, order)
        return [batch["index"].tolist() for _ in range(3) for batch in loader][:7]

    assert first_steps("trainer") == model.seen
    # The committed peer runs' order shares no epoch with it: the DataLoader draws a base seed from
    # the generator before the permutation, and later epochs continue the generator, not reseed it.
    torch_order = first_steps("torch")
    assert torch_order[:3] != model.seen[:3] and torch_order[3:6] != model.seen[3:6]
    assert len(set(sum(torch_order[:3], []))) == 9  # still a permutation: an epoch is 9 distinct rows of the 10
