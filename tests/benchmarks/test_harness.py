import json

from harness import machine_info, write_report


def test_write_report__json_round_trip_with_machine_info(tmp_path):
    report = {"machine": machine_info(), "results": [{"case": "x", "seconds_per_step": 0.5}]}
    path = write_report(report, tmp_path / "deep" / "report.json")
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(report))
    assert loaded["machine"]["cpu_count"] >= 1 and loaded["machine"]["torch"]


def test_random_images_and_collated_views__the_batch_a_step_sees():
    import torch
    from harness import collated_views, random_images

    from hf_sslviews.views import two_view_transform

    images = random_images(3, 24, seed=5)
    assert [image.size for image in images] == [(24, 24)] * 3 and images[0].mode == "RGB"
    assert images[0].tobytes() == random_images(1, 24, seed=5)[0].tobytes()
    assert images[0].tobytes() != random_images(1, 24, seed=6)[0].tobytes()
    batch = collated_views(two_view_transform(size=16), images)
    assert set(batch) == {"pixel_values_1", "pixel_values_2"}
    assert batch["pixel_values_1"].shape == (3, 3, 16, 16) and batch["pixel_values_1"].dtype == torch.float32
