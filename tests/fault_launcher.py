"""``tinygradlm`` with a fault injected, for the tests that run it under ``mpiexec``::

    python tests/fault_launcher.py fail RANK STEP -- train KEY=VALUE ...
    python tests/fault_launcher.py stall RANK STEP SECONDS -- train KEY=VALUE ...

``fail``: rank RANK raises at the start of step STEP (and any later one), to check that an
error on one rank ends the whole job. ``stall``: rank RANK sleeps SECONDS before the gradients
of step STEP travel, to check the collective watchdog."""

import sys
import time

from tinygradlm.cli import main
from tinygradlm.train import RunHooks


class FailAtStep(RunHooks):
    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def before_step(self, step: int, rank: int) -> None:
        if rank == self.rank and step >= self.step:
            raise RuntimeError(f"injected failure at step {step} on rank {rank}")


class StallBeforeSync(RunHooks):
    def __init__(self, rank: int, step: int, seconds: float) -> None:
        self.rank, self.step, self.seconds = rank, step, seconds

    def before_gradient_sync(self, step: int, rank: int) -> None:
        if rank == self.rank and step == self.step:
            time.sleep(self.seconds)


def hooks_from(spec: list[str]) -> RunHooks:
    kind, *numbers = spec
    if kind == "fail":
        return FailAtStep(int(numbers[0]), int(numbers[1]))
    if kind == "stall":
        return StallBeforeSync(int(numbers[0]), int(numbers[1]), float(numbers[2]))
    raise SystemExit(f"unknown fault {kind!r}: fail or stall")


if __name__ == "__main__":
    cut = sys.argv.index("--")
    sys.exit(main(sys.argv[cut + 1 :], hooks=hooks_from(sys.argv[1:cut])))
