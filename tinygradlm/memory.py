"""Refusing work that cannot fit: an estimate of the bytes a thing needs, checked against what
the machine has before anything is allocated.

A config that asks for ``n_layer = 10**9`` would otherwise spend minutes and gigabytes before
NumPy's ``MemoryError``; a caller estimates first (``GPTConfig.parameter_count``,
``tinygradlm.model.training_bytes``) and calls :func:`check_fits`, whose error states the
estimate, what is available, and what asked.
"""

from __future__ import annotations

import os

__all__ = ["available_bytes", "check_fits", "format_bytes"]


def available_bytes() -> int:
    """Memory this process may still use: ``MemAvailable`` from ``/proc/meminfo`` (Linux), else
    the physical memory (``os.sysconf``), else a large number (no check possible)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def format_bytes(n: float) -> str:
    """``n`` bytes for a person: ``512 B``, ``3.2 MiB``, ``7.5 GiB``, ``4.0e+06 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB" if abs(n) < 1e4 else f"{n:.1e} TiB"


def check_fits(nbytes: int, what: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` when ``nbytes`` exceed the available memory: ``what`` says what would
    need them (``"train config: the model (n_layer=1000000000, ...) and its AdamW state"``)."""
    available = available_bytes()
    if nbytes > available:
        raise error(
            f"{what} needs about {format_bytes(nbytes)}, more than the {format_bytes(available)} "
            f"of memory available"
        )
