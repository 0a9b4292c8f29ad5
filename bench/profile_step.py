"""Where the time and the memory of one fused training step go, layer by layer.

The step is bench/step.py's (forward, backward, gradient clipping, AdamW on the flat buffers,
as the Trainer's step runs them on one process), on GPT-2 124M at B=4, T=256 by default. The
model code is not changed: the layer calls are wrapped from outside, in this process only
(``ModelLayers``' layer norm, linear and attention calls, the backend's residual, GELU,
attention backward, encoder and cross-entropy functions, ``GPT.forward`` / ``GPT.backward``,
the block backward, ``clip_grad_norm``'s norm and scaling, and ``AdamW.step``).

Time (a fresh process): each section's own time (``StepTimer``: a section inside another
counts in the inner one only), median over ``--steps`` steps after a warm-up step, summed over
the layers (``--per-layer`` keeps the blocks apart); "self" rows are what the wrapped caller
does between its layer calls (zeroing the gradient, the block's residual adds in backward, the
embedding's gradient added into the flat buffer). The step is also timed without the wrappers,
to show what they cost. ``--trace OUT`` writes the sections of the last step as a Chrome trace.

Memory (a second fresh process, ``tracemalloc``, which sees NumPy's allocations in its domain
389047): the step's high-water mark of traced memory is located between two section
boundaries, and snapshots taken at those two boundaries in the next step list every array
alive at the first by the line of code that allocated it, and what the section allocated and
still holds at its end; what it allocated and freed before its end is one more row. The
table adds the resident set of the interpreter and libraries (after one step of the tiny
model: JIT compilation included) and compares the sum with the peak resident set measured in
the timing process. Arrays the Numba kernels allocate inside compiled code are not traced
(the kernels allocate their outputs in Python, so the table misses little).

    python bench/profile_step.py                          # GPT-2 124M, B=4, T=256, 1 thread
    python bench/profile_step.py --config small --threads 2
    python bench/profile_step.py --config gpt2-t1024 --json profile.json --trace step.trace.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import linecache
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step import BENCH_PRESETS, build, resolve, status_kib, thread_env

NUMPY_DOMAIN = 389047  # the tracemalloc domain NumPy registers its data buffers in
REPO = Path(__file__).resolve().parent.parent

# the backend's layer functions called directly by the model (the rest go through ModelLayers)
_LAYER_FUNCTIONS = {
    "residual_forward": "fwd residual",
    "gelu_forward": "fwd gelu",
    "gelu_backward": "bwd gelu",
    "attention_backward": "bwd attention",
    "encoder_forward": "fwd encoder",
    "encoder_backward": "bwd encoder",
    "crossentropy_forward": "fwd crossentropy",
    "crossentropy_backward": "bwd crossentropy",
}


def _module_name(name: str, per_layer: bool) -> str:
    """``h.3.attn.c_attn`` -> ``attn.c_attn`` (or kept whole with per_layer)."""
    if per_layer or not name.startswith("h."):
        return name
    return name.split(".", 2)[2]


@contextmanager
def instrumented(enter: Any, leave: Any, per_layer: bool):
    """Wrap the step's calls so that ``enter(section)`` and ``leave(section)`` run around each;
    everything is restored on exit."""
    from tinygradlm import backend, optim
    from tinygradlm.model import gpt as gpt_module
    from tinygradlm.model.layers import ModelLayers

    patches: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, section: Any) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = section(*args) if callable(section) else section
            enter(name)
            try:
                return original(*args, **kwargs)
            finally:
                leave(name)

        patches.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    wrap(gpt_module.GPT, "forward_backward", "self: zero grads, token checks")
    wrap(gpt_module.GPT, "forward", "self: forward")
    wrap(gpt_module.GPT, "_backward_body", "self: backward")
    # training's tied head and loss run fused over row chunks: one section, forward and backward
    wrap(ModelLayers, "head_loss", "lm_head + loss (fused, fwd+bwd)")
    wrap(gpt_module, "block_backward", "self: block backward (residual adds)")
    wrap(ModelLayers, "layernorm", lambda s, x, m, *a: "fwd " + _module_name(m, per_layer))
    wrap(ModelLayers, "linear", lambda s, x, m, *a: "fwd " + _module_name(m, per_layer))
    wrap(
        ModelLayers,
        "attention",
        lambda s, x, i, *a: f"fwd h.{i}.attention" if per_layer else "fwd attention",
    )
    for method in ("layernorm_backward", "linear_backward"):
        wrap(ModelLayers, method, lambda s, d, c: "bwd " + _module_name(c[0], per_layer))
    layers = backend.layers()
    for fn, section in _LAYER_FUNCTIONS.items():
        wrap(layers, fn, section)
    wrap(optim, "grad_norm", "clip: norm")  # clip_grad_norm's two parts, looked up at call time
    wrap(optim, "clip_to_norm", "clip: scale")
    wrap(optim.AdamW, "step", "adamw")
    try:
        yield
    finally:
        for owner, attr, original in reversed(patches):
            setattr(owner, attr, original)


def _engine(args: argparse.Namespace) -> str:
    """The bench/step.py engine profiled: the fused step with the chosen kernels."""
    return "fused-" + args.kernels + ("-recompute" if args.recompute_mlp else "")


def _warm_libraries() -> int:
    """One step of the tiny model (JIT compilation, first-call set-up); the resident KiB after."""
    from tinygradlm.model import GPTConfig

    warm, _ = build("fused-numba", GPTConfig.preset("tiny"), 2, 16)
    warm()
    del warm
    gc.collect()
    return status_kib("VmRSS")


def time_phase(args: argparse.Namespace) -> dict[str, Any]:
    from tinygradlm.model import GPTConfig
    from tinygradlm.monitor.timing import StepTimer
    from tinygradlm.monitor.trace import ChromeTrace

    preset, B, T = resolve(args.config, args.batch, args.seq)
    rss_libraries = _warm_libraries()
    trace = ChromeTrace(args.trace) if args.trace else None
    timer = StepTimer(sections=())
    order: list[str] = []
    stack: list[Any] = []

    def enter(name: str) -> None:
        if name not in order:
            order.append(name)
        cm = timer(name)
        cm.__enter__()
        stack.append(cm)

    def leave(name: str) -> None:
        stack.pop().__exit__(None, None, None)

    step, model = build(_engine(args), GPTConfig.preset(preset), B, T)
    step()  # warm-up
    plain = []
    for _ in range(args.steps):  # without the wrappers
        start = time.perf_counter()
        step()
        plain.append(time.perf_counter() - start)
    splits, wrapped = [], []
    with instrumented(enter, leave, args.per_layer):
        for i in range(args.steps):
            timer.reset()
            timer.trace = trace if i == args.steps - 1 else None
            start = time.perf_counter()
            step()
            wrapped.append(time.perf_counter() - start)
            splits.append(timer.split())
    if trace is not None:
        trace.write()
    sections = {name: statistics.median(s.get(name, 0.0) for s in splits) for name in order}
    calls = defaultdict(int)

    def count(name: str) -> None:
        calls[name] += 1

    with instrumented(count, lambda name: None, args.per_layer):
        step()
    return {
        "rss_libraries_kib": rss_libraries,
        "peak_rss_kib": status_kib("VmHWM"),
        "step_seconds": statistics.median(plain),
        "wrapped_step_seconds": statistics.median(wrapped),
        "sections": [{"section": n, "seconds": sections[n], "calls": calls[n]} for n in order],
        "activation_bytes": model.activation_bytes(B, T),
        "parameters": int(model.flat_params.size),
    }


def _site(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame in this repository's code (not NumPy's) that made an allocation."""
    for frame in reversed(traceback):  # tracemalloc lists the oldest call first
        path = Path(frame.filename)
        if REPO in path.parents and "site-packages" not in path.parts:
            code = linecache.getline(frame.filename, frame.lineno).strip()
            return f"{path.relative_to(REPO)}:{frame.lineno}  {code}"
    return f"{traceback[0].filename}:{traceback[0].lineno}" if len(traceback) else "?"


def _kind(site: str) -> str:
    if site.startswith("tinygradlm/params.py"):
        return "parameters / gradients"
    if site.startswith("tinygradlm/optim.py"):
        return "AdamW moments"
    if site.startswith("tinygradlm/model/workspace.py"):
        return "activations (workspace)"
    return "alive at the peak"


def memory_phase(args: argparse.Namespace) -> dict[str, Any]:
    from tinygradlm.model import GPTConfig

    preset, B, T = resolve(args.config, args.batch, args.seq)
    rss_libraries = _warm_libraries()
    tracemalloc.start(args.frames)
    step, _ = build(_engine(args), GPTConfig.preset(preset), B, T)
    step()  # warm-up: the workspace and every lasting buffer is allocated here

    # pass 1: the traced memory at each section boundary and its peak since the previous one
    marks: list[tuple[str, int, int]] = []

    def mark(what: str) -> Any:
        def hook(name: str) -> None:
            current, peak = tracemalloc.get_traced_memory()
            marks.append((f"{what} {name}", current, peak))
            tracemalloc.reset_peak()

        return hook

    tracemalloc.reset_peak()
    with instrumented(mark("before"), mark("after"), args.per_layer):
        step()
    # marks[k]'s peak happened between boundary k-1 and boundary k
    k = max(range(1, len(marks)), key=lambda i: marks[i][2])
    boundary, at_boundary = marks[k - 1][0], marks[k - 1][1]
    peak = marks[k][2]

    # pass 2: the same step again, snapshots at the two boundaries around the peak
    snapshots: list[Any] = []
    seen = [0]

    def snap(name: str) -> None:
        seen[0] += 1
        if seen[0] in (k, k + 1):  # boundary i is the (i+1)-th call
            snapshots.append(tracemalloc.take_snapshot())

    with instrumented(snap, snap, args.per_layer):
        step()
    tracemalloc.stop()
    (start, start_other), (end, _) = (_by_site(snapshot) for snapshot in snapshots)
    buffers = [
        {"site": site, "kind": _kind(site), "bytes": size, "arrays": count}
        for site, (size, count) in sorted(start.items(), key=lambda item: -item[1][0])
    ]
    # what the section allocated and still holds at its end, by site
    added = []
    for site, (size, count) in end.items():
        before, before_count = start.get(site, (0, 0))
        if size > before:
            added.append({"site": site, "bytes": size - before, "arrays": count - before_count})
    added.sort(key=lambda b: -b["bytes"])
    transient = peak - at_boundary
    return {
        "rss_libraries_kib": rss_libraries,
        "peak_section": f"between '{boundary}' and '{marks[k][0]}'",
        "traced_peak_bytes": peak,
        "traced_at_boundary_bytes": at_boundary,
        "transient_bytes": transient,
        "added_in_section": added,
        "transient_rest_bytes": transient - sum(b["bytes"] for b in added),
        "python_objects_bytes": start_other,
        "buffers": buffers,
    }


def _by_site(snapshot: Any) -> tuple[dict[str, tuple[int, int]], int]:
    """NumPy's buffers in a snapshot as site -> (bytes, arrays); the other domains' bytes."""
    sizes: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    other = 0
    for trace in snapshot.traces:
        if trace.domain == NUMPY_DOMAIN:
            site = _site(trace.traceback)
            sizes[site] += trace.size
            counts[site] += 1
        else:
            other += trace.size
    return {site: (sizes[site], counts[site]) for site in sizes}, other


def _run_phase(phase: str, argv: list[str], threads: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--phase", phase]
    out = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"the {phase} phase failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace, timing: dict[str, Any], memory: dict[str, Any]) -> None:
    preset, B, T = resolve(args.config, args.batch, args.seq)
    MiB = 2**20
    step = timing["step_seconds"]
    wrapped = timing["wrapped_step_seconds"]
    print(
        f"{args.config}: {preset}, B={B} T={T}, {args.threads} thread(s), {args.kernels} "
        f"kernels; step {1e3 * step:.1f} ms ({B * T / step:.0f} tokens/s), "
        f"{1e3 * wrapped:.1f} ms with the wrappers; median of {args.steps} steps"
    )
    print(f"\n{'section':<40}{'ms/step':>10}{'share':>8}{'calls':>7}")
    total = sum(s["seconds"] for s in timing["sections"])
    for s in sorted(timing["sections"], key=lambda s: -s["seconds"]):
        share = s["seconds"] / wrapped
        print(f"{s['section']:<40}{1e3 * s['seconds']:>10.1f}{share:>8.1%}{s['calls']:>7}")
    print(f"{'(outside every section)':<40}{1e3 * (wrapped - total):>10.1f}")

    print(f"\nmemory at the peak ({memory['peak_section']}):")
    print(f"{'arrays x [kind] allocated at':<110}{'MiB':>9}")
    rows = [
        (
            "interpreter, libraries, JIT code (resident before the model)",
            timing["rss_libraries_kib"] * 1024,
        )
    ]
    kinds: dict[str, int] = defaultdict(int)
    for b in memory["buffers"]:
        kinds[b["kind"]] += b["bytes"]
    shown = memory["buffers"][: args.top]
    rows += [(f"{b['arrays']:>3} x [{b['kind']}] {b['site']}", b["bytes"]) for b in shown]
    rest = memory["buffers"][args.top :]
    if rest:
        rows.append((f"{len(rest)} more allocation sites", sum(b["bytes"] for b in rest)))
    rows += [
        (f"{b['arrays']:>3} x [allocated in the section] {b['site']}", b["bytes"])
        for b in memory["added_in_section"]
    ]
    rows.append(
        (
            "the rest of the section's peak (allocated and freed inside it)",
            memory["transient_rest_bytes"],
        )
    )
    rows.append(("Python objects (tracemalloc's other domains)", memory["python_objects_bytes"]))
    for label, size in rows:
        print(f"{label[:110]:<110}{size / MiB:>9.1f}")
    accounted = sum(size for _, size in rows)
    measured = timing["peak_rss_kib"] * 1024
    print(f"{'sum':<110}{accounted / MiB:>9.1f}")
    print(f"{'measured peak resident set (VmHWM, the timing process)':<110}{measured / MiB:>9.1f}")
    print(f"{'sum / measured':<110}{accounted / measured:>9.2f}")
    print("\nby kind:")
    for kind, size in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"  {kind:<30}{size / MiB:>9.1f} MiB")
    print(f"  (GPT.activation_bytes: {timing['activation_bytes'] / MiB:.1f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="presets: "
        + ", ".join(BENCH_PRESETS)
        + "; or a GPTConfig preset with --batch/--seq",
    )
    parser.add_argument("--config", default="gpt2-t256", help="a bench/step.py preset")
    parser.add_argument("--batch", type=int, default=None, help="B (default: the preset's)")
    parser.add_argument("--seq", type=int, default=None, help="T (default: the preset's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after a warm-up)")
    parser.add_argument("--kernels", default="numba", choices=["numba", "numpy"])
    parser.add_argument(
        "--recompute-mlp", action="store_true", help="c_fc's outputs computed again in backward"
    )
    parser.add_argument("--per-layer", action="store_true", help="a row per block and layer")
    parser.add_argument("--top", type=int, default=25, help="allocation sites listed")
    parser.add_argument("--frames", type=int, default=12, help="traceback depth kept")
    parser.add_argument("--json", help="write both phases' results to this file")
    parser.add_argument("--trace", help="write the last timed step as a Chrome trace")
    parser.add_argument("--phase", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase = time_phase if args.phase == "time" else memory_phase
        print(json.dumps(phase(args)))
        return
    argv = sys.argv[1:]
    if args.json:  # the phases print their results; only this process writes the file
        i = argv.index("--json")
        argv = argv[:i] + argv[i + 2 :]
    timing = _run_phase("time", argv, args.threads)
    memory = _run_phase("memory", [a for a in argv], args.threads)
    report(args, timing, memory)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"config": args.config, "threads": args.threads, "time": timing, "memory": memory},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
