"""Weighted kNN evaluation (DINO protocol) of an exported backbone, train split -> test split.

    python scripts/run_knn_eval.py --model_name_or_path out/aps-vit-tiny/backbone \\
        --dataset_name sample --k 10 20 100 200 --output_file knn.json
    python scripts/run_knn_eval.py --model_name_or_path out/aps-vit-tiny/backbone --random_init   # the floor

The backbone is loaded with ``AutoModel.from_pretrained`` (a timm-format export loads as
``TimmWrapperModel``); images go through timm's evaluation transform built from the export's
``pretrained_cfg``. Arguments can also come from a JSON file: ``run_knn_eval.py args.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from hf_sslviews.evaluation.features import eval_transform_for
from hf_sslviews.evaluation.knn import run_knn_evaluation
from hf_sslviews.runs.evaluate import FrozenBackboneArguments, describe, load_backbone_and_splits, parse_arguments, write_results


@dataclass
class KnnEvalArguments(FrozenBackboneArguments):
    k: list[int] = field(default_factory=lambda: [20], metadata={"help": "Number(s) of neighbours, e.g. --k 10 20 100 200."})
    temperature: float = field(default=0.07, metadata={"help": "Vote temperature T: each neighbour votes exp(cosine / T) (DINO: 0.07)."})

    def __post_init__(self):
        super().__post_init__()
        if not self.k or min(self.k) < 1:
            raise ValueError(f"--k needs neighbour counts >= 1, got {self.k}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_arguments(KnnEvalArguments, argv)
    model, train, test, device = load_backbone_and_splits(args)
    results = run_knn_evaluation(
        model, train, test, eval_transform_for(model), ks=args.k, temperature=args.temperature,
        image_column=args.image_column_name, label_column=args.label_column_name, batch_size=args.batch_size, device=device,
        progress=True,
    )
    print(f"weighted kNN (T={args.temperature}) {describe(args)}: {args.train_split} ({results['num_train']}) -> {args.test_split} ({results['num_test']})")
    for key, scores in results["knn"].items():
        print(f"  {key:>6}: top-1 {100 * scores['top1']:6.2f}%  top-5 {100 * scores['top5']:6.2f}%")
    write_results(args, results)
    return results


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
