"""One "node" of the two-node test: ``torchrun --nnodes 2 --node_rank R --nproc_per_node 1 ... tests/training/distributed_node.py OUT``.

torchrun sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``; the process joins the
group through them (``env://``), as a process on a second machine would, and runs the same cases
as the spawned two-process test (:func:`distributed_workers.worker`).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file: make the tests package importable

from tests.training import distributed_workers  # noqa: E402

if __name__ == "__main__":
    distributed_workers.worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", sys.argv[1])
