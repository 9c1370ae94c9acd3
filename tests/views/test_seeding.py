"""Views seeded per (seed, epoch, row): independent of loading order, new every epoch."""

import torch

from hf_sslviews.data.sources import prepare_for_views
from hf_sslviews.views import APSViewTransform, two_view_transform
from hf_sslviews.views.base import SAMPLE_INDEX_COLUMN, view_seed

from ..helpers import random_image_dataset


def _views(transform, dataset, rows):
    batch = dataset.select(rows).to_dict()
    return transform(batch)["pixel_values_1"]


def test_view_seed__stable_and_distinct():
    assert view_seed(0, 0, [5]) == view_seed(0, 0, [5])
    assert len({view_seed(0, 0, [5]), view_seed(0, 1, [5]), view_seed(1, 0, [5]), view_seed(0, 0, [6])}) == 4


def test_views__same_row_same_views_whatever_else_the_rng_did():
    dataset = prepare_for_views(random_image_dataset(6, size=20))
    transform = two_view_transform(size=16)
    transform.seed = 7
    first = _views(transform, dataset, [3])
    torch.rand(1000)  # anything else drawing from the global RNG in between
    again = _views(transform, dataset, [3])
    assert torch.equal(first[0], again[0])


def test_views__new_epoch_new_views_and_unseeded_transform_draws_from_the_stream():
    dataset = prepare_for_views(random_image_dataset(6, size=20))
    transform = two_view_transform(size=16)
    transform.seed = 7
    epoch0 = _views(transform, dataset, [1, 2])
    transform.epoch = 1
    epoch1 = _views(transform, dataset, [1, 2])
    assert not torch.equal(epoch0[0], epoch1[0])
    transform.seed = None
    assert not torch.equal(_views(transform, dataset, [1, 2])[0], _views(transform, dataset, [1, 2])[0])


def test_prepare_for_views__adds_row_positions():
    dataset = prepare_for_views(random_image_dataset(5))
    assert dataset[SAMPLE_INDEX_COLUMN] == [0, 1, 2, 3, 4]
    assert prepare_for_views(dataset).column_names.count(SAMPLE_INDEX_COLUMN) == 1


def test_aps_views__seeded_batches_repeat_exactly():
    dataset = prepare_for_views(random_image_dataset(4, size=40))
    transform = APSViewTransform(size=32, patch_size=8)
    transform.seed = 3
    a = transform(dataset.select([0, 1]).to_dict())
    b = transform(dataset.select([0, 1]).to_dict())
    assert torch.equal(a["token_indices_1"][0], b["token_indices_1"][0]) and torch.equal(a["pixel_values_2"][1], b["pixel_values_2"][1])


def test_views__persistent_dataloader_workers_see_each_new_epoch():
    """The epoch lives in shared memory: a worker started in epoch 0 makes epoch 1's views."""
    from torch.utils.data import DataLoader

    from hf_sslviews.data.collator import ViewCollator

    dataset = prepare_for_views(random_image_dataset(4, size=20))
    transform = two_view_transform(size=16)
    transform.seed = 7
    loader = DataLoader(dataset.with_transform(transform), batch_size=4, num_workers=1, persistent_workers=True, collate_fn=ViewCollator())
    expected = {}
    for epoch in (0, 1, 2):
        transform.epoch = epoch
        expected[epoch] = torch.stack(_views(transform, dataset, [0, 1, 2, 3]))
    seen = {}
    for epoch in (0, 1, 2):
        transform.epoch = epoch  # what ViewEpochCallback does at each epoch's start
        seen[epoch] = next(iter(loader))["pixel_values_1"]
    for epoch in (0, 1, 2):
        assert torch.equal(seen[epoch], expected[epoch]), epoch
    assert not torch.equal(seen[0], seen[1])
