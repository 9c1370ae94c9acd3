"""scripts/visualize_views.py: every renderer writes a PNG at a small size; bad input fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_sslviews.methods import RECIPES

from ..helpers import load_script

pytest.importorskip("matplotlib")
pytest.importorskip("skimage")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Small sizes so that each figure takes well under a second or two on CPU.
SMALL_RUNS = {
    "aps": ["--num_images", "1", "--size", "32", "--patch_size", "8"],
    "patchmix": ["--num_images", "3", "--size", "32", "--patch_size", "4"],
    "clsa": ["--num_images", "1", "--preset", "single_cifar"],
    "mulan": ["--num_images", "1", "--size", "32", "--n_local", "2"],
    "repco": ["--num_images", "1", "--size", "32", "--patch_size", "8", "--num_queries", "2"],
    "mocov3": ["--num_images", "1", "--size", "32"],
    "byol": ["--num_images", "1", "--size", "32"],
    "simsiam": ["--num_images", "1", "--size", "32"],
}


@pytest.fixture(scope="module")
def visualizer():
    return load_script("visualize_views")


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_visualize_views__every_method_has_a_small_run(visualizer):
    assert set(visualizer.RENDERERS) <= set(SMALL_RUNS)


@pytest.mark.parametrize("method", ["byol", "mulan"])
def test_visualize_views__a_method_without_its_own_picture_draws_each_view_its_transform_makes(visualizer, method, tmp_path, monkeypatch):
    # What a registered method without an entry in RENDERERS gets (a new method draws at once).
    monkeypatch.delitem(visualizer.RENDERERS, method)
    images = visualizer.load_sample_images(1)
    args = visualizer.parse_args(["--method", method, "--size", "32", "--patch_size", "8"])
    fig = visualizer.renderer(method)(images, args)
    titles = [ax.get_title() for ax in fig.axes]
    expected = {"byol": ["source", "pixel_values_1", "pixel_values_2"],
                "mulan": ["source", "global_pixel_values[0]", "global_pixel_values[1]", "local_pixel_values[0]", "local_pixel_values[1]"]}[method]
    assert titles[: len(expected)] == expected
    for ax in fig.axes[1:]:
        (image,) = ax.get_images()
        assert image.get_array().shape[-1] == 3 and float(image.get_array().std()) > 0.01  # an image, not a blank
    output = tmp_path / "views.png"
    visualizer.main(["--method", method, "--output", str(output), "--dpi", "30", "--num_images", "1", "--size", "32", "--patch_size", "8"])
    assert_png(output)


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_visualize_views__writes_a_png(visualizer, method, tmp_path):
    # Every registered method draws (a method without its own picture gets render_views).
    output = tmp_path / f"views_{method}.png"
    small = SMALL_RUNS.get(method, ["--num_images", "1", "--size", "32", "--patch_size", "8"])
    written = visualizer.main(["--method", method, "--output", str(output), "--dpi", "40", "--seed", "1", *small])
    assert written == str(output)
    assert_png(output)


def test_visualize_views__clsa_multi_preset(visualizer, tmp_path):
    output = tmp_path / "multi.png"
    visualizer.main(["--method", "clsa", "--preset", "multi_cifar", "--num_images", "1", "--output", str(output), "--dpi", "30"])
    assert_png(output)


def test_visualize_views__repco_hand_features_are_deterministic_and_centred(visualizer):
    import numpy as np

    image = visualizer._square(visualizer.load_sample_images(1)[0], 32)
    features = visualizer.hand_cell_features(image, 4)
    assert features.shape == (16, 15)
    assert np.allclose(features.mean(0).numpy(), 0, atol=1e-5)  # z-scored: cosine spans [-1, 1]
    assert (visualizer.hand_cell_features(image, 4) == features).all()


def test_visualize_views__bad_method_names_the_choices(visualizer, capsys):
    with pytest.raises(SystemExit):
        visualizer.main(["--method", "simclr"])
    error = capsys.readouterr().err
    assert "simclr" in error and "patchmix" in error and "repco" in error


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "patchmix", "--num_images", "1"], "--num_images >= 2"),
        (["--method", "patchmix", "--num_images", "2", "--size", "30", "--patch_size", "4"], "multiple of --patch_size"),
        (["--method", "clsa", "--preset", "huge"], "--preset must be one of"),
        (["--method", "repco", "--num_images", "9"], "--num_images must lie in"),
    ],
)
def test_visualize_views__bad_arguments_fail_clearly(visualizer, tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        visualizer.main([*argv, "--output", str(tmp_path / "bad.png")])


@pytest.mark.parametrize("architecture", ["test_resnet", "test_vit"])
def test_visualize_views__repco_uses_an_exported_backbone(visualizer, tmp_path, architecture):
    import timm
    from timm.models._hub import save_for_hf

    folder = tmp_path / "backbone"
    save_for_hf(timm.create_model(architecture, num_classes=0), str(folder), safe_serialization=True)
    output = tmp_path / "repco.png"
    visualizer.main(["--method", "repco", "--model_name_or_path", str(folder), "--num_images", "1", "--size", "64", "--output", str(output), "--dpi", "40"])
    assert_png(output)


def test_visualize_views__the_user_own_images(visualizer, tmp_path):
    import numpy as np
    from PIL import Image

    grey = tmp_path / "garment.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8), mode="L").save(grey)  # grayscale, not square
    output = tmp_path / "pair.png"
    visualizer.main(["--method", "byol", "--image", str(grey), "--size", "32", "--output", str(output)])
    assert_png(output)
    with pytest.raises(SystemExit, match="cannot be read as an image"):
        visualizer.main(["--method", "byol", "--image", str(tmp_path / "missing.jpg"), "--output", str(output)])


def test_visualize_views__output_never_replaces_a_file_that_is_not_a_figure(visualizer, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("my notes, named like a figure")
    with pytest.raises(ValueError, match="exists and is not a PNG figure"):
        visualizer.main(["--method", "mocov3", "--output", str(notes), "--dpi", "30", *SMALL_RUNS["mocov3"]])
    assert notes.read_text() == "my notes, named like a figure"
