"""The points where a run calls out during a step, for a test to inject a fault (an error on
one rank, a stalled rank): pass an object with these methods as ``Trainer(..., hooks=...)`` or
``tinygradlm.cli.main(argv, hooks=...)``. Here every one does nothing."""

from __future__ import annotations


class RunHooks:
    """No-op hook points; a test subclasses this and overrides the ones it needs."""

    def before_step(self, step: int, rank: int) -> None:
        """At the start of optimizer step ``step`` (counted from 1) on rank ``rank``."""

    def before_gradient_sync(self, step: int, rank: int) -> None:
        """After this rank's forward/backward passes, before its gradients travel."""
