"""Training progress as lines a person can read while a run is going: epoch, losses, best
epoch so far and the time left, at most one line per interval."""

from __future__ import annotations

import time
from collections.abc import Callable

# The Python logger that training progress also goes to (`nids demo` prints it).
TRAINING_PROGRESS_LOGGER = "nids.training"


class EpochProgress:
    """Feed it each epoch's row (`epoch`, `train_loss`, `val_loss`); it calls `say` with a
    progress line on the first epoch, then at most every `every_s` seconds, and on the
    last epoch it sees through `finish()`. The time left is a range: early stopping ends
    training `patience` epochs after the best one unless validation loss improves again,
    and `max_epochs` bounds it."""

    def __init__(
        self,
        say: Callable[[str], None],
        max_epochs: int,
        patience: int,
        label: str = "graph model",
        every_s: float = 10.0,
    ):
        self.say, self.max_epochs, self.patience = say, max_epochs, patience
        self.label, self.every_s = label, every_s
        self.started = time.monotonic()
        self.last_said = -float("inf")
        self.best_loss, self.best_epoch = float("inf"), 0
        self.row: dict | None = None

    def __call__(self, row: dict) -> None:
        self.row = row
        if row["val_loss"] < self.best_loss - 1e-6:
            self.best_loss, self.best_epoch = row["val_loss"], row["epoch"]
        now = time.monotonic()
        if row["epoch"] == 1 or now - self.last_said >= self.every_s:
            self.last_said = now
            self.say(self.line(now))

    def line(self, now: float) -> str:
        row = self.row or {}
        epoch = row.get("epoch", 0)
        per_epoch = (now - self.started) / max(epoch, 1)
        stop_left = max(0, min(self.best_epoch + self.patience, self.max_epochs) - epoch)
        max_left = self.max_epochs - epoch
        return (
            f"{self.label}: epoch {epoch}/{self.max_epochs}, train loss "
            f"{row.get('train_loss', float('nan')):.4f}, validation loss "
            f"{row.get('val_loss', float('nan')):.4f} (best {self.best_loss:.4f} at epoch "
            f"{self.best_epoch}), {per_epoch:.2f} s/epoch, ETA {stop_left * per_epoch:.0f} s "
            f"if validation loss stops improving, at most {max_left * per_epoch:.0f} s"
        )

    def finish(self) -> None:
        if self.row is not None:
            epoch = self.row["epoch"]
            self.say(
                f"{self.label}: stopped after epoch {epoch} in {time.monotonic() - self.started:.1f} s; "
                f"best validation loss {self.best_loss:.4f} at epoch {self.best_epoch}"
            )
