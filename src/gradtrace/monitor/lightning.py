"""`GradtraceCallback`: the monitor inside PyTorch Lightning's `Trainer.fit` (`lightning` extra).

    trainer = lightning.Trainer(callbacks=[GradtraceCallback(every=10, log="runs/exp1")])

Each training batch is one monitored step, numbered by `trainer.global_step`. The callback
opens `Monitor.step` when a batch starts and closes it when the batch ends; Lightning's own
hooks stand in for the optimizer's (`on_before_optimizer_step` comes after backward, before
`gradient_clip_val` clipping and the update; the update is done when the batch ends), since
Lightning steps the optimizer with a closure that runs backward and the clipping inside it,
after the optimizer's own pre-step hooks. What the clipping left is read when the batch
ends. The loss comes from `on_before_backward`; the clipping is audited like any
`clip_grad_norm_` call. The numbers are those a plain loop with a `Monitor` records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradtrace.monitor.monitor import Monitor, Step
from gradtrace.monitor.schedule import Schedule

LIGHTNING = "the Lightning callback needs the lightning package: pip install 'gradtrace[lightning]'"

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the extra is missing
    raise ModuleNotFoundError(LIGHTNING) from None


class GradtraceCallback(Callback):
    """A `Monitor` for `Trainer.fit`; takes `Monitor`'s options (but the model and optimizer,
    which come from the trainer).

    Attributes:
        monitor: The Monitor, once training has started.
    """

    def __init__(
        self,
        every: Schedule | int = 10,
        log: str | Path | None = None,
        *,
        tensorboard: bool = False,
        lag_every: int | None = None,
        trace_every: int | None = None,
        chunk: int | None = None,
        on_nonfinite: str = "continue",
    ) -> None:
        super().__init__()
        self.options: dict[str, Any] = {
            "every": every,
            "log": log,
            "tensorboard": tensorboard,
            "lag_every": lag_every,
            "trace_every": trace_every,
            "chunk": chunk,
            "on_nonfinite": on_nonfinite,
        }
        self.monitor: Monitor | None = None
        self._open: Any = None
        self._step: Step | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.monitor = Monitor(pl_module, None, **self.options)

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        assert self.monitor is not None
        self._open = self.monitor.step(int(trainer.global_step))
        self._step = self._open.__enter__()

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        if self._step is not None:
            self._step.loss(loss)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._step is not None:
            self._step.before_update()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._step is not None:
            self._step.events.optimizer_stepped = True
            self._step.after_update()
        self._close(None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close(exception)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def _close(self, exception: BaseException | None) -> None:
        opened, self._open, self._step = self._open, None, None
        if opened is not None:
            if exception is None:
                opened.__exit__(None, None, None)
            else:
                opened.__exit__(type(exception), exception, exception.__traceback__)
