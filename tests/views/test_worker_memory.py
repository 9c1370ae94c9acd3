"""The DataLoader workers' memory settings: applied in workers only, outputs born in shared memory."""

import ctypes.util
import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from hf_sslviews.views import worker_memory
from hf_sslviews.views.worker_memory import keep_freed_memory_in_worker, view_output


class _Probe(Dataset):
    """Reports, from inside the worker, what the helpers did there."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        tensor = view_output((2, 3, 4, 4), torch.float32)
        return {"tuned": keep_freed_memory_in_worker(), "shared": tensor.is_shared(), "shape": tuple(tensor.shape)}


def _in_worker(monkeypatch, **env):
    for key in list(os.environ):
        if key.startswith("MALLOC_") or key == worker_memory.OPT_OUT_VARIABLE:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return next(iter(DataLoader(_Probe(), batch_size=None, num_workers=1)))


def test_main_process__nothing_is_changed():
    assert keep_freed_memory_in_worker() is False
    tensor = view_output((2, 3), torch.uint8)
    assert not tensor.is_shared() and tensor.shape == (2, 3) and tensor.dtype == torch.uint8


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library to tune")
def test_worker__settings_applied_and_outputs_shared(monkeypatch):
    report = _in_worker(monkeypatch)
    assert report["shared"] and list(report["shape"]) == [2, 3, 4, 4]
    assert report["tuned"] is True


@pytest.mark.parametrize("env", [{"HF_SSLVIEWS_WORKER_MALLOC": "0"}, {"MALLOC_ARENA_MAX": "2"}])
def test_worker__opt_out_and_user_malloc_settings_win(monkeypatch, env):
    report = _in_worker(monkeypatch, **env)
    assert report["tuned"] is False and report["shared"]


# ----------------------------------------------------------------------------- one decoded image at a time


def _tracked_images(count: int, alive_when_yielded: list):
    """Yields ``count`` images; before each, records how many earlier ones are still referenced."""
    import weakref

    refs = []
    for index in range(count):
        alive_when_yielded.append(sum(ref() is not None for ref in refs))
        image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)
        refs.append(weakref.ref(image))
        yield image
        del image


@pytest.mark.parametrize("name", ["pair", "multitask", "aps"])
def test_batched_views__each_decoded_image_is_dropped_once_cropped(name):
    from hf_sslviews.views import APSViewTransform, MultiTaskViewTransform, two_view_transform

    transform = {
        "pair": lambda: two_view_transform(size=32),
        "multitask": lambda: MultiTaskViewTransform("cifar"),
        "aps": lambda: APSViewTransform(size=32, patch_size=4),
    }[name]()
    alive: list = []
    views = transform._views_of(_tracked_images(5, alive))
    # The consumer's loop variable still holds the previous image while the next one is decoded:
    # at most two at a time, never the batch (a transform that listed them would show 0, 1, 2, 3, 4).
    assert alive == [0, 1, 1, 1, 1]
    assert all(value.shape[0] == 5 for value in views.values() if isinstance(value, torch.Tensor))


def test_decoded_images__iterated_once_and_bad_values_counted():
    from PIL import Image

    from hf_sslviews.views.base import DecodedImages

    images = DecodedImages([Image.new("RGB", (4, 3)), b"not an image", Image.new("L", (2, 2))])
    decoded = list(images)
    assert [tuple(image.shape) for image in decoded] == [(3, 3, 4), (3, 2, 2)]
    assert images.ok == [True, False, True] and len(images) == 3
    with pytest.raises(RuntimeError, match="iterated once"):
        list(images)
    assert DecodedImages([b"bad"]).ok == [False]  # never iterated: decoded on demand
