"""``before_train`` patches on how a run starts and stops (every environment)."""

from __future__ import annotations

from primus.backends.megatron_bridge import NAME
from primus.core.patches import PatchContext, register_patch


def install_stop_before_training() -> None:
    """Bridge's exit-signal handler also stops a run at once while the loop has not begun.

    ``DistributedSignalHandler`` only sets a flag that the training loop reads; a signal
    during model or dataset-index building waits for the first iteration. Once the loop has
    begun (or outside a Primus run) the handler behaves exactly as Bridge's.
    """
    import signal

    from megatron.bridge.training.utils.sig_utils import DistributedSignalHandler

    if getattr(DistributedSignalHandler, "_primus_stop_before_training", False):
        return
    enter = DistributedSignalHandler.__enter__

    def __enter__(self):
        result = enter(self)
        bridge_handler = signal.getsignal(self.sig)
        if not getattr(self, "_installed", False) or not callable(bridge_handler):
            return result

        def handler(signum, frame):
            from primus.backends.megatron_bridge import stop_signals

            if stop_signals.ACTIVE is not None:
                stop_signals.ACTIVE.before_loop_hook(signum)
            bridge_handler(signum, frame)

        signal.signal(self.sig, handler)
        return result

    __enter__.__doc__ = enter.__doc__
    DistributedSignalHandler.__enter__ = __enter__
    DistributedSignalHandler._primus_stop_before_training = True


@register_patch(
    "megatron_bridge.stop_before_training",
    backend=NAME,
    phase="before_train",
    description="SIGTERM / Ctrl-C before the first iteration stops the run at once (Bridge only reads its signal flag inside the loop)",
)
def stop_before_training(ctx: PatchContext) -> None:
    install_stop_before_training()
