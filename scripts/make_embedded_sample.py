"""Build the Fashion-MNIST sample embedded in the package (hf_sslviews/resources/).

Reads Debian's dataset-fashion-mnist files, draws a class-balanced subset with a fixed seed
(300 train images per class -> 3,000; 100 test images per class -> 1,000), and writes them as
uint8 / int64 tensors with safetensors, plus the data card FASHION_MNIST_SAMPLE.md.

    python scripts/make_embedded_sample.py            # writes into hf_sslviews/resources/
    python scripts/make_embedded_sample.py --check    # rebuilds in memory, compares with the shipped file

Running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from hf_sslviews.data.sources import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist_arrays

SEED = 0
PER_CLASS = {"train": 300, "test": 100}
RESOURCES = Path(__file__).resolve().parents[1] / "hf_sslviews" / "resources"
SAFETENSORS_NAME = "fashion_mnist_sample.safetensors"
CARD_NAME = "FASHION_MNIST_SAMPLE.md"


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` random indices of each label, drawn without replacement, in ascending order."""
    chosen = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(len(FASHION_MNIST_CLASSES))]
    return np.sort(np.concatenate(chosen))


def build_sample(data_dir: Path = FASHION_MNIST_DIR) -> dict[str, np.ndarray]:
    """Draw the sample: ``{split}_images`` uint8 ``[N, 28, 28]`` and ``{split}_labels`` int64 ``[N]``."""
    rng = np.random.default_rng(SEED)
    tensors = {}
    for split, per_class in PER_CLASS.items():
        images, labels = load_fashion_mnist_arrays(split, data_dir)
        keep = balanced_indices(labels, per_class, rng)
        tensors[f"{split}_images"] = np.ascontiguousarray(images[keep], dtype=np.uint8)
        tensors[f"{split}_labels"] = np.ascontiguousarray(labels[keep], dtype=np.int64)
    return tensors


def render_card(tensors: dict[str, np.ndarray], sha256: str) -> str:
    """The data card: source, license, sampling procedure, classes."""
    classes = "\n".join(f"| {i} | {name} |" for i, name in enumerate(FASHION_MNIST_CLASSES))
    sizes = ", ".join(f"`{key}` {tensors[key].dtype} {list(tensors[key].shape)}" for key in sorted(tensors))
    return f"""# Embedded Fashion-MNIST sample

`fashion_mnist_sample.safetensors` is a small, class-balanced subset of Fashion-MNIST shipped
inside hf_sslviews so that tests, examples and the default `dataset_name="sample"` work offline.
Load it with `hf_sslviews.data.sources.load_image_dataset("sample", split="train" | "test")`: images
come out as 28x28 RGB PIL images (the grayscale value repeated on three channels) in an
`image` column, and labels as a `ClassLabel` column `label`.

## Source

- Dataset: **Fashion-MNIST** by Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf,
  "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms",
  arXiv:1708.07747, 2017), https://github.com/zalandoresearch/fashion-mnist
- Files: Debian package `dataset-fashion-mnist` (0.0~git20200523.55506a9), installed at
  `/usr/share/datasets/fashion-mnist/` (`train-images-idx3-ubyte.gz`,
  `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`).

## Sampling

Made by `scripts/make_embedded_sample.py` (deterministic; rerunning it gives the same bytes):
`numpy.random.default_rng({SEED})`; for each class 0..9 in order, {PER_CLASS["train"]} indices of the
60,000-image train split are drawn without replacement, then {PER_CLASS["test"]} per class from the
10,000-image t10k split; indices are sorted, so examples keep their original order. The pixels
are unchanged.

Tensors (safetensors, no pickle): {sizes}.
SHA-256 of the file: `{sha256}`.

## Classes

| label | name |
|---|---|
{classes}

## License

Fashion-MNIST is released under the MIT License:

    The MIT License (MIT) Copyright (c) 2017 Zalando SE, https://tech.zalando.com

    Permission is hereby granted, free of charge, to any person obtaining a copy of this
    software and associated documentation files (the "Software"), to deal in the Software
    without restriction, including without limitation the rights to use, copy, modify, merge,
    publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
    to whom the Software is furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all copies or
    substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
    INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
    PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
    FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
    OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
    DEALINGS IN THE SOFTWARE.

The Debian packaging is (c) 2019-2020 Mo Zhou, also under the MIT (Expat) license.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=FASHION_MNIST_DIR, help="folder with the Fashion-MNIST IDX .gz files")
    parser.add_argument("--output_dir", type=Path, default=RESOURCES, help="where to write the .safetensors file and the card")
    parser.add_argument("--check", action="store_true", help="do not write; verify the shipped file equals a fresh build")
    args = parser.parse_args()

    tensors = build_sample(args.data_dir)
    target = args.output_dir / SAFETENSORS_NAME
    if args.check:
        shipped = load_file(str(target))
        same = shipped.keys() == tensors.keys() and all(np.array_equal(shipped[k], tensors[k]) for k in tensors)
        print("shipped sample matches a fresh build" if same else "shipped sample DIFFERS from a fresh build")
        raise SystemExit(0 if same else 1)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # One metadata key only: safetensors writes several keys in hash-map order, which would
    # make the bytes differ from run to run.
    save_file(tensors, str(target), metadata={"description": f"Fashion-MNIST (Zalando Research, MIT) sample, seed {SEED}; see {CARD_NAME}"})
    target.chmod(0o644)  # safetensors creates the file owner-only; package data must be readable
    sha256 = hashlib.sha256(target.read_bytes()).hexdigest()
    (args.output_dir / CARD_NAME).write_text(render_card(tensors, sha256))
    print(f"wrote {target} ({target.stat().st_size} bytes, sha256 {sha256}) and {args.output_dir / CARD_NAME}")


if __name__ == "__main__":
    main()
