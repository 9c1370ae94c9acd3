"""The run record: what a run folder keeps of its arguments and results, for runs and checkpoints."""

import json

from hf_sslviews.publish.run_folder import RunRecord, is_backbone_folder, is_pretraining_folder


def test_run_record__round_trip_and_a_checkpoint_reads_its_runs_arguments_without_results(tmp_path):
    record = RunRecord(
        arguments={"model": {"preset": "aps_tiny"}, "data": {"dataset_name": "sample", "train_dir": None}, "eval": {"knn_k": 10}},
        results={"method": "aps", "preset": "aps_tiny", "knn": {"pretrained": {"top1": 0.5}}},
    )
    record.write(tmp_path)
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary files left
    again = RunRecord.read(tmp_path)
    assert again == record
    assert (again.preset, again.knn_k, again.knn, again.data["dataset_name"]) == ("aps_tiny", 10, {"pretrained": {"top1": 0.5}}, "sample")

    checkpoint = tmp_path / "checkpoint-20"
    checkpoint.mkdir()
    from_checkpoint = RunRecord.read(checkpoint)
    assert from_checkpoint.arguments == record.arguments and from_checkpoint.results == {} and from_checkpoint.knn is None


def test_run_record__a_folder_without_files_records_nothing(tmp_path):
    record = RunRecord.read(tmp_path)
    assert (record.arguments, record.results, record.preset, record.knn_k) == ({}, {}, None, 20)


def test_folder_kinds__backbone_and_pretraining_configs(tmp_path):
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224"}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sslviews_aps"}))
    assert is_backbone_folder(tmp_path / "backbone") and not is_pretraining_folder(tmp_path / "backbone")
    assert is_pretraining_folder(tmp_path) and not is_backbone_folder(tmp_path)
