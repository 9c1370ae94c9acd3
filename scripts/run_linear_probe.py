"""Linear probe of an exported backbone: frozen features, a linear classifier, top-1 / top-5 on test.

    python scripts/run_linear_probe.py --model_name_or_path out/aps-vit-tiny/backbone \\
        --dataset_name sample --feature_cache cache/ --output_file linear.json
    python scripts/run_linear_probe.py --model_name_or_path out/backbone --random_init     # the floor
    python scripts/run_linear_probe.py --model_name_or_path out/backbone --solver sgd --epochs 100 \\
        --dataset_name uoft-cs/cifar10 --image_column_name img

Features are extracted once per split (with ``--feature_cache``, saved as safetensors and reused
by later runs); the default solver is full-batch L-BFGS logistic regression with the L2 strength
picked from ``--weight_decays`` on a held-out ``--val_fraction`` of train, then refitted on all
of train. Arguments can also come from a JSON file: ``run_linear_probe.py args.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from hf_sslviews.evaluation.features import eval_transform_for, weights_fingerprint
from hf_sslviews.evaluation.linear_probe import DEFAULT_WEIGHT_DECAYS, run_linear_probe
from hf_sslviews.runs.evaluate import FrozenBackboneArguments, describe, load_backbone_and_splits, parse_arguments, write_results


@dataclass
class LinearProbeArguments(FrozenBackboneArguments):
    feature_cache: Optional[str] = field(default=None, metadata={"help": "Folder caching the extracted features as safetensors (keyed by model, weights, data and caps); reused by later runs."})
    solver: str = field(default="lbfgs", metadata={"help": "'lbfgs': full-batch L-BFGS logistic regression (small sets); 'sgd': SGD + momentum, cosine lr, --epochs over cached features.", "choices": ["lbfgs", "sgd"]})
    weight_decays: list[float] = field(default_factory=lambda: list(DEFAULT_WEIGHT_DECAYS), metadata={"help": "L2 strengths to sweep (loss = mean CE + wd/2 ||W||^2); the best on the held-out split is refitted on all of train. One value: no sweep."})
    val_fraction: float = field(default=0.2, metadata={"help": "Fraction of train held out for the weight-decay sweep."})
    epochs: int = field(default=50, metadata={"help": "--solver sgd: passes over the cached training features."})
    learning_rate: float = field(default=0.1, metadata={"help": "--solver sgd: peak learning rate of the cosine schedule."})
    max_iter: int = field(default=1000, metadata={"help": "--solver lbfgs: L-BFGS iterations at most."})


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_arguments(LinearProbeArguments, argv)
    model, train, test, device = load_backbone_and_splits(args)
    cache_key = {**args.source(), "model": weights_fingerprint(args.model_name_or_path), "random_init": args.random_init,
                 "init_seed": args.seed if args.random_init else None, "splits": [args.train_split, args.test_split],
                 "max_samples": [args.max_train_samples, args.max_test_samples]}
    solver_kwargs = dict(max_iter=args.max_iter) if args.solver == "lbfgs" else dict(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate)
    results = run_linear_probe(
        model, train, test, eval_transform_for(model), solver=args.solver, weight_decays=args.weight_decays,
        val_fraction=args.val_fraction, seed=args.seed, image_column=args.image_column_name, label_column=args.label_column_name,
        batch_size=args.batch_size, device=device, feature_cache=args.feature_cache, cache_key=cache_key, solver_kwargs=solver_kwargs,
        progress=True,
    )
    scores = results["linear_probe"]
    print(f"linear probe ({args.solver}, weight_decay {results['weight_decay']:g}) {describe(args)}: "
          f"{args.train_split} ({results['num_train']}) -> {args.test_split} ({results['num_test']})")
    print(f"  top-1 {100 * scores['top1']:6.2f}%  top-5 {100 * scores['top5']:6.2f}%  (train top-1 {100 * results['train_top1']:.2f}%)")
    write_results(args, results)
    return results


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
