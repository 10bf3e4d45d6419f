"""A short sparse-training run on the RTL, checked against the golden model program by program.

Every resident tile of the run uses :class:`cimtile.train.resident.CompareBackend`: each program (program
the weights, forward, VAU, WSET, mask writes, read-backs of levels and masks) runs on the golden model and
on the generated RTL under Verilator (one simulator process per layer, kept for the whole run), and any
difference in read-outs or cycles stops the run with :class:`cimtile.train.resident.ReplayMismatch`.
"""

from __future__ import annotations

from cimtile.hw.params import PRESETS, TileConfig

from .sparse import Schedule, SparseResult, run

__all__ = ["REPLAY_TILE", "replay"]

#: The ``tiny`` tile widened to 32 columns, so that the ``micro`` model's 8->10 layer (20 columns) fits.
REPLAY_TILE: TileConfig = PRESETS["tiny"].replace(name="tiny32", cols=32)


def replay(images: int = 64, methods=("exact", "vau-lsq", "vau-sign"), epochs: int = 1,
           lr: float = 2.0) -> list[SparseResult]:
    """Train the ``micro`` model on ``images`` digits (batches of 32) through the whole schedule with every
    program checked on the RTL; returns the results (equal to the golden model's by construction)."""
    s = Schedule(model="micro", data="digits", tile=REPLAY_TILE, abits=4, sparsity=0.75, pretrain_epochs=epochs,
                 survive_epochs=epochs, regrow_fraction=0.25, train_epochs=epochs, lr=lr, batch=32,
                 limit_train=images, limit_test=32, backend="compare", vau_gain=1.0)
    return run(s, methods)[0]
