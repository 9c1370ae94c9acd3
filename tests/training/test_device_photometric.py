"""--photometric_on_device: uint8 crops from the workers, the colour ops on the collated batch."""

import pytest
import torch
from torch import nn

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.training.device_photometric import DevicePhotometricLoader, finish_views
from hf_sslviews.training.repeated_batches import skip_first_batches
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import APSViewTransform, MultiTaskViewTransform, two_view_transform

from ..helpers import random_image_dataset


def test_deferred_views__are_the_crops_and_finishing_them_equals_the_cpu_path():
    views = two_view_transform(size=16)
    dataset = random_image_dataset(12, size=24)
    torch.manual_seed(0)
    finished_on_cpu = views({"image": dataset["image"]})
    views.photometric_on_device = True
    torch.manual_seed(0)
    crops = views({"image": dataset["image"]})
    batch = ViewCollator()([{key: crops[key][i] for key in crops} for i in range(12)])
    assert batch["pixel_values_1"].dtype == torch.uint8 and batch["pixel_values_1"].shape == (12, 3, 16, 16)
    # Same seed after the crops: the deferred colour ops draw what the in-worker ones drew.
    plan = views.deferred_photometric()
    torch.manual_seed(1)
    ours = finish_views(batch, plan)
    torch.manual_seed(1)
    want = {key: plan[key][0].photometric_normalize_batch(batch[key]) for key in plan}
    for key in plan:
        assert ours[key].dtype == torch.float32
        torch.testing.assert_close(ours[key], want[key])
    assert ours["pixel_values_1"].shape == torch.stack(finished_on_cpu["pixel_values_1"]).shape


def test_deferred_views__multicrop_groups_finish_per_view():
    views = MultiTaskViewTransform("cifar", n_local=2, n_cutout=1, local_size=8)
    views.photometric_on_device = True
    dataset = random_image_dataset(4, size=40)
    out = views({"image": dataset["image"]})
    batch = ViewCollator()([{key: out[key][i] for key in out} for i in range(4)])
    assert batch["global_pixel_values"].dtype == torch.uint8 and batch["local_pixel_values"].shape == (4, 2, 3, 8, 8)
    finished = finish_views(batch, views.deferred_photometric())
    for key in ("global_pixel_values", "local_pixel_values", "cutout_pixel_values"):
        assert finished[key].dtype == torch.float32 and finished[key].shape == batch[key].shape
        assert finished[key].abs().max() < 5  # normalised, not 0..255


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[torch.dtype, float]] = []

    def forward(self, pixel_values_1, pixel_values_2, chunk_index=0, return_loss=True):
        if self.training:
            self.seen.append((pixel_values_1.dtype, float(pixel_values_1.sum())))
        return {"loss": (self.weight * pixel_values_1.mean()).abs().squeeze()}


def _args(tmp_path, **overrides):
    return SSLTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=4, learning_rate=0.1, save_strategy="no",
        report_to="none", use_cpu=True, logging_steps=1, seed=0, photometric_on_device=True, **overrides,
    )


def test_trainer__the_model_gets_finished_views_and_repeated_steps_reuse_them(tmp_path):
    model = Recorder()
    dataset = random_image_dataset(8, size=24).with_transform(two_view_transform(size=16))
    SSLTrainer(model=model, args=_args(tmp_path, steps_per_batch=2), train_dataset=dataset, data_collator=ViewCollator()).train()
    assert [dtype for dtype, _ in model.seen] == [torch.float32] * 4
    sums = [value for _, value in model.seen]
    assert sums[0] == sums[1] and sums[2] == sums[3] and sums[0] != sums[2]  # one finished batch per loaded batch


def test_deferred_views__aps_pairs_keep_their_patch_indices():
    views = APSViewTransform(size=32, patch_size=8)
    dataset = random_image_dataset(4, size=40)
    torch.manual_seed(0)
    finished = views({"image": dataset["image"]})
    views.photometric_on_device = True
    torch.manual_seed(0)
    deferred = views({"image": dataset["image"]})
    assert deferred["pixel_values_1"][0].dtype == torch.uint8 and finished["pixel_values_1"][0].dtype == torch.float32
    for key in ("token_indices_1", "token_indices_2", "crop_boxes"):  # the geometry does not depend on where the colours are made
        assert all(torch.equal(a, b) for a, b in zip(deferred[key], finished[key]))
    assert set(views.deferred_photometric()) == {"pixel_values_1", "pixel_values_2"}


def test_trainer__views_that_cannot_defer_are_refused(tmp_path):
    from hf_sslviews.views import CLSAViewTransform

    dataset = random_image_dataset(8, size=40).with_transform(CLSAViewTransform("single_cifar"))
    with pytest.raises(ValueError, match="photometric_on_device: CLSAViewTransform cannot defer"):
        SSLTrainer(model=Recorder(), args=_args(tmp_path), train_dataset=dataset, data_collator=ViewCollator())


def test_resume__skipping_batches_keeps_the_wrapper():
    loader = DevicePhotometricLoader(torch.utils.data.DataLoader([{"x": i} for i in range(5)], batch_size=1), plan={})
    skipped = skip_first_batches(loader, 3)
    assert isinstance(skipped, DevicePhotometricLoader)
    assert [int(batch["x"]) for batch in skipped] == [3, 4]
