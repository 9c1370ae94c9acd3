#!/usr/bin/env python
"""Self-supervised pretraining with any hf_sslviews method and ordinary TrainingArguments.

    python scripts/run_pretrain.py                                   # default CPU preset, embedded data
    python scripts/run_pretrain.py --preset mocov3_cifar_vit_small --dataset_name uoft-cs/cifar10 --image_column_name img
    python scripts/run_pretrain.py --method byol --backbone resnet18 --train_dir ./images --output_dir out
    python scripts/run_pretrain.py args.json                         # the same flags as a JSON file

``--help`` lists every argument (method, data, kNN evaluation, and all of TrainingArguments).
"""

from hf_sslviews.runs.pretrain import parse_args, run_pretraining, shutdown_distributed


def main() -> None:
    run_pretraining(*parse_args())
    shutdown_distributed()


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
