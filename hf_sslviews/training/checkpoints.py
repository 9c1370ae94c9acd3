"""Trainer checkpoints written whole or not at all.

``Trainer._save_checkpoint`` writes ``checkpoint-N`` in place: a crash while it writes leaves a
half-written ``checkpoint-N`` that ``get_last_checkpoint`` (and ``--resume_from_checkpoint last``)
then picks, and ``save_total_limit`` may already have deleted the last good one.
:func:`save_checkpoint_atomically` runs the stock method unchanged but points it at a staging
folder, ``<output_dir>/.checkpoint-N.tmp/checkpoint-N``:

- the staging name starts with a dot, so neither ``get_last_checkpoint`` (regex
  ``^checkpoint-\\d+$``) nor the rotation (glob ``checkpoint-*``) ever sees it;
- the stock rotation runs inside the staging folder, where it has nothing to delete; the real
  rotation runs only after the rename, so the newest *complete* checkpoint is always kept;
- every process writes its files (RNG states) into the staging folder, all wait, then the main
  process fsyncs the files and renames the folder to ``checkpoint-N`` (one atomic rename on the
  same file system);
- on an exception the staging folder is removed and the existing checkpoints are untouched; after a
  hard kill a stale staging folder is invisible and is cleared the next time step ``N`` is saved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..atomic import fsync_tree, replace_dir

STAGING_SUFFIX = ".tmp"


def staging_dir(run_dir: str | os.PathLike, step: int) -> Path:
    """``<run_dir>/.checkpoint-<step>.tmp``: where checkpoint ``step`` is written before its rename."""
    return Path(run_dir) / f".{PREFIX_CHECKPOINT_DIR}-{step}{STAGING_SUFFIX}"


def save_checkpoint_atomically(trainer, save_checkpoint: Callable[[Any, Any], None], model, trial) -> Path:
    """Run the stock ``save_checkpoint(model, trial)`` into a staging folder, then rename it.

    Call it from ``Trainer._save_checkpoint``::

        def _save_checkpoint(self, model, trial):
            save_checkpoint_atomically(self, super()._save_checkpoint, model, trial)

    Args:
        trainer: the ``transformers.Trainer`` saving (its ``_get_output_dir`` is redirected to the
            staging folder for the duration of the call).
        save_checkpoint: the stock ``Trainer._save_checkpoint`` bound to ``trainer``.
        model, trial: passed through.

    Returns:
        The final ``checkpoint-N`` folder.
    """
    args = trainer.args
    run_dir = Path(trainer._get_output_dir(trial=trial))
    step = trainer.state.global_step
    final = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{step}"
    staging = staging_dir(run_dir, step)
    staged = staging / final.name
    wait = trainer.accelerator.wait_for_everyone

    if args.should_save:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving this step
        staging.mkdir(parents=True)
    wait()
    trainer._get_output_dir = lambda trial=None: str(staging)  # noqa: ARG005 - instance override
    try:
        save_checkpoint(model, trial)
        wait()  # every process has written its files (RNG states) before the rename
        _fix_staged_paths(trainer, staged, final, write=args.should_save)
        if args.should_save:
            fsync_tree(staged)
            replace_dir(staged, final)
            shutil.rmtree(staging, ignore_errors=True)
            # The rotation the stock method ran inside the staging folder, now on the real one:
            # the checkpoint just renamed is the newest, so it is never the one deleted.
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=args.save_total_limit,
                best_model_checkpoint=trainer.state.best_model_checkpoint,
                use_mtime=True,
            )
        wait()
    except BaseException:
        if args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        del trainer._get_output_dir  # back to the class method
    return final


def _fix_staged_paths(trainer, staged: Path, final: Path, write: bool) -> None:
    """Point ``best_model_checkpoint`` at the final folder when the stock code recorded the staged one."""
    state = trainer.state
    if state.best_model_checkpoint and Path(state.best_model_checkpoint) == staged:
        state.best_model_checkpoint = str(final)
        state_file = staged / "trainer_state.json"
        if write and state_file.is_file():
            state.save_to_json(str(state_file))


__all__ = ["save_checkpoint_atomically", "staging_dir"]
