"""Run a training program unchanged and record when each optimiser step ends.

    python -m diffalign.bench.step_timer --out T.json -- SCRIPT.py [args ...]
    python -m diffalign.bench.step_timer --out T.json -- -m diffalign.cli train cfg.yaml

A *global* optimiser post-step hook (``torch.optim.optimizer.register_optimizer_step_post_hook``)
fires after every ``Optimizer.step()`` in the process — accelerate's wrapped optimiser calls the
torch one, so every real update is seen, whichever program runs. The program then runs through
``runpy`` exactly as ``python SCRIPT args`` (or ``python -m MODULE args``) would. Nothing of it is
copied or patched, so the peer script and our trainer are timed by the same clock.

At exit (also on error) ``T.json`` holds the step-end offsets (s from launch), the process's peak
RSS (``ru_maxrss``), the CUDA peak allocation when CUDA was used, and the exit status — and the
same two peaks over the *training steps* only: when the first optimiser step ends, the peaks are
reset (Linux: ``5`` written to ``/proc/self/clear_refs`` resets ``VmHWM``; CUDA:
``reset_peak_memory_stats``), so ``peak_rss_steps_mib`` and ``cuda_peak_steps_mib`` exclude model
loading and set-up (None where the platform cannot reset the peak).
``steady_rate`` turns them into pairs/s over steps ``skip+1..N``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import runpy
import sys
import time

__all__ = ["steady_rate"]

T0 = time.perf_counter()


def steady_rate(step_ends: list[float], pairs_per_step: int, skip: int = 2) -> float | None:
    """``pairs · (N − skip) / (t_N − t_skip)``: the first ``skip`` steps (lazy initialisation,
    first batch, allocator warm-up, compilation) excluded. None when too few steps were recorded."""
    n = len(step_ends)
    if n <= skip or skip < 1:
        return None
    window = step_ends[-1] - step_ends[skip - 1]
    return pairs_per_step * (n - skip) / window if window > 0 else None


def _reset_rss_peak() -> bool:
    """Resets the process's resident-set high-water mark (Linux ≥ 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _rss_peak_mib() is not None
    except OSError:
        return False


def _rss_peak_mib() -> float | None:
    """``VmHWM`` of ``/proc/self/status`` in MiB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: python -m diffalign.bench.step_timer --out T.json -- (SCRIPT.py | -m MODULE) [args ...]")
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="step_timer")
    p.add_argument("--out", required=True)
    opts = p.parse_args(argv[:cut])
    prog = argv[cut + 1 :]
    if not prog or (prog[0] == "-m" and len(prog) < 2):
        sys.exit("step_timer: nothing to run after --")

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    ends: list[float] = []
    state = {"exit": None, "t_start": time.perf_counter() - T0, "rss_reset": False, "cuda_reset": False}

    def on_step(opt, args, kwargs) -> None:
        ends.append(time.perf_counter() - T0)
        if len(ends) == 1:  # from here on, the peaks are the training steps'
            state["rss_reset"] = _reset_rss_peak()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.reset_peak_memory_stats()
                state["cuda_reset"] = True

    register_optimizer_step_post_hook(on_step)

    def dump() -> None:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        rec = {"program": prog, "t_program_start_s": state["t_start"], "t_exit_s": time.perf_counter() - T0,
               "exit": state["exit"], "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "cuda_peak_allocated_mib": cuda_peak,
               "peak_rss_steps_mib": _rss_peak_mib() if state["rss_reset"] else None,
               "cuda_peak_steps_mib": cuda_peak if state["cuda_reset"] else None,
               "step_end_s": [round(t, 5) for t in ends]}
        os.makedirs(os.path.dirname(os.path.abspath(opts.out)) or ".", exist_ok=True)
        with open(opts.out, "w") as f:
            json.dump(rec, f, indent=1)

    atexit.register(dump)
    try:
        if prog[0] == "-m":
            sys.argv = [prog[1], *prog[2:]]
            runpy.run_module(prog[1], run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(prog[0])
            sys.argv = [script, *prog[1:]]
            sys.path.insert(0, os.path.dirname(script))
            runpy.run_path(script, run_name="__main__")
        state["exit"] = 0
    except SystemExit as e:
        state["exit"] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        raise
    except BaseException as e:  # noqa: BLE001 — recorded, then re-raised
        state["exit"] = f"{type(e).__name__}: {e}"
        raise


if __name__ == "__main__":
    main()
