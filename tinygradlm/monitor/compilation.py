"""Saying so when the Numba kernels compile, instead of a silent half-minute.

    announce_compilation   a context manager: the first time Numba compiles a function inside
                           it, one message goes out (``compiling kernels, first run only …``)

Every kernel in ``tinygradlm.kernels`` is compiled with ``cache=True``: the first process that
calls it compiles it and writes the machine code to Numba's on-disk cache (``__pycache__``
beside the source, or ``NUMBA_CACHE_DIR``), and later processes load it from there in
milliseconds. The first ``train`` of a fresh checkout therefore spends tens of seconds compiling
before its first step prints anything.

Numba raises a ``numba:compile`` event (its public event API, ``numba.core.event``) around each
compilation, after a cache lookup has failed and never when the code was loaded from the cache.
Listening for it is what makes the message exact: it appears when, and only when, something is
really compiled, whichever kernels and dtypes the run turns out to use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

COMPILING_MESSAGE = (
    "compiling kernels, first run only (up to a minute; later runs load them from Numba's cache)"
)


@contextlib.contextmanager
def announce_compilation(
    say: Callable[[str], None], message: str = COMPILING_MESSAGE
) -> Iterator[None]:
    """Call ``say(message)`` once, when Numba first starts compiling inside the block; nothing
    when every function called was already compiled in this process or loaded from the cache.
    Imports Numba: use it only when the Numba kernels are in use."""
    from numba.core import event

    said = False

    class _FirstCompilation(event.Listener):
        def on_start(self, _event: event.Event) -> None:
            nonlocal said
            if not said:
                said = True
                say(message)

        def on_end(self, _event: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", _FirstCompilation()):
        yield
