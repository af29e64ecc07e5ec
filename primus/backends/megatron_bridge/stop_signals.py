"""Ctrl-C and SIGTERM stop a run cleanly: nothing lost, no traceback, the resume hint.

- In the training loop, SIGINT is treated like SIGTERM: Megatron-Bridge's own exit path
  (``train.exit_signal_handler``) saves a checkpoint at the next iteration boundary and stops.
  A second Ctrl-C aborts at once.
- Before the loop (model build, dataset indices) there is nothing to save: either signal stops
  the run at once. Bridge installs its SIGTERM handler when the run starts and only reads its
  flag inside the loop, so without the ``megatron_bridge.stop_before_training`` patch a SIGTERM
  there is swallowed until the first iteration (forever, when index building never ends).
- Bridge logs "Pretrain failed ... SystemExit: 0" with a traceback for these stops; that record
  is dropped, as the stop is the user's own request.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from megatron.bridge.training.callbacks import Callback

logger = logging.getLogger(__name__)

#: the GracefulStop of the run in progress (the patched Bridge handler consults it)
ACTIVE: GracefulStop | None = None


class StopBeforeTraining(BaseException):
    """A signal arrived before the first iteration (BaseException: nothing may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _DropStopTracebacks(logging.Filter):
    """Bridge's "Pretrain failed" record for a requested stop (its traceback is noise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, StopBeforeTraining | KeyboardInterrupt):
            return False
        return not (isinstance(exc, SystemExit) and exc.code in (0, None))


_FILTER = _DropStopTracebacks()


class GracefulStop(Callback):
    """Installs the SIGINT / exit-signal handlers for one run and remembers what arrived."""

    def __init__(self, exit_signal: int = signal.SIGTERM) -> None:
        self.exit_signal = int(exit_signal)
        self.received: int | None = None
        self.loop_started = False
        self._previous: dict[int, object] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def install(self) -> None:
        global ACTIVE
        ACTIVE = self
        for signum in {signal.SIGINT, self.exit_signal}:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._before_loop)
        logging.getLogger("megatron.bridge.training.pretrain").addFilter(_FILTER)

    def uninstall(self) -> None:
        global ACTIVE
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        logging.getLogger("megatron.bridge.training.pretrain").removeFilter(_FILTER)
        if ACTIVE is self:
            ACTIVE = None

    def on_train_start(self, context) -> None:
        """The loop begins: from now on a signal means "checkpoint, then stop"."""
        self.loop_started = True
        bridge_handler = signal.getsignal(self.exit_signal)

        def on_exit_signal(signum: int, frame: FrameType | None) -> None:
            self.received = self.received or signum
            if callable(bridge_handler):
                bridge_handler(signum, frame)

        signal.signal(self.exit_signal, on_exit_signal)
        signal.signal(signal.SIGINT, self._in_loop_sigint)

    # -- handlers -------------------------------------------------------------------------
    def _before_loop(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        raise StopBeforeTraining(signum)

    def _in_loop_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT:  # the second Ctrl-C: abort now, without saving
            # An exception raised here can land in a weakref or GC callback, where Python only
            # prints it and carries on: leave the process directly instead.
            print(
                "\nprimus: aborted by a second Ctrl-C (the last saved checkpoint is kept)",
                file=sys.stderr,
                flush=True,
            )
            logging.shutdown()
            os._exit(exit_code(signal.SIGINT))
        first = self.received is None
        self.received = signal.SIGINT
        if first:
            print(
                "\nprimus: Ctrl-C: saving a checkpoint at the end of this iteration, then stopping "
                "(Ctrl-C again to abort without saving)",
                file=sys.stderr,
                flush=True,
            )
        handler = signal.getsignal(self.exit_signal)
        if callable(handler):
            handler(self.exit_signal, frame)

    def before_loop_hook(self, signum: int) -> None:
        """Called by the patched Bridge handler: before the loop, stop at once."""
        if not self.loop_started:
            self._before_loop(signum, None)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + signal number."""
    return 128 + int(signum)
