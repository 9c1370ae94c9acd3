"""ViewCollator: stacking rows, skipped images, and no second copy of a batched transform's views."""

import torch

from hf_sslviews.data.collator import ViewCollator, stack_rows
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset


def test_stack_rows__rows_of_one_tensor_are_viewed_not_copied():
    batch = torch.randn(5, 2, 3, 4, 4)
    rows = [batch[i] for i in range(5)]
    stacked = stack_rows(rows)
    assert torch.equal(stacked, torch.stack(rows))
    assert stacked.data_ptr() == batch.data_ptr()  # no copy
    stacked[0, 0, 0, 0, 0] = 42.0
    assert batch[0, 0, 0, 0, 0] == 42.0


def test_stack_rows__anything_else_is_stacked():
    batch = torch.randn(5, 3, 4, 4)
    for rows in ([batch[0], batch[2], batch[3]], [batch[1], batch[0]], [batch[0], torch.randn(3, 4, 4)], [batch[i, :, :, :2] for i in range(3)]):
        stacked = stack_rows(rows)
        assert torch.equal(stacked, torch.stack(rows))
        assert stacked.data_ptr() != batch.data_ptr()


def test_view_collator__batched_views_skip_bad_rows_and_match_stacking():
    dataset = random_image_dataset(6, size=40, bad=2).with_transform(two_view_transform(size=16))
    torch.manual_seed(0)
    rows = dataset.__getitems__(list(range(8)))  # the 2 undecodable images are the last rows
    batch = ViewCollator()(rows)
    assert batch["num_skipped_images"].item() == 2
    good = [row for row in rows if row["image_ok"]]
    for key in ("pixel_values_1", "pixel_values_2"):
        assert torch.equal(batch[key], torch.stack([row[key] for row in good]))
        assert batch[key].data_ptr() == good[0][key].data_ptr()  # the transform's tensor, not a copy
    shuffled = ViewCollator()([rows[3], rows[0], rows[1]])
    assert torch.equal(shuffled["pixel_values_1"], torch.stack([rows[3]["pixel_values_1"], rows[0]["pixel_values_1"], rows[1]["pixel_values_1"]]))
