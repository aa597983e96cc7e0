"""Fault injection for ``diffalign bench kill``: named points where the bench may SIGKILL a run.

A no-op unless its environment variables are set. ``DIFFALIGN_FAULT_LOG=<file>`` appends every
site passed to the file (the bench learns from an uninterrupted run how often each is reached);
``DIFFALIGN_FAULT=<site>:<n>`` SIGKILLs the process the n-th time ``site`` is reached.

Sites: ``cache`` (a batch of the latent-caching pass encoded), ``refcache`` (a batch of the text
trainer's reference log-probs computed), ``step`` (an optimiser update done, its metrics line and
checkpoint not yet written), ``checkpoint:partial`` (a checkpoint's weights written, the optimiser
not yet), ``checkpoint:files`` / ``final:files`` (every file written, no completion marker yet),
``checkpoint:marker`` / ``final:marker`` (marked, not yet renamed into place), ``prune`` (an old
checkpoint renamed out of the way, not yet deleted) and ``eval`` (the closing evaluation has
sampled one model on one split).
"""

from __future__ import annotations

import os

__all__ = ["fault_point"]

_HITS: dict[str, int] = {}


def fault_point(site: str) -> None:
    """Log ``site`` and SIGKILL this process at its n-th hit when the environment asks for it."""
    log, fault = os.environ.get("DIFFALIGN_FAULT_LOG"), os.environ.get("DIFFALIGN_FAULT")
    if log:
        with open(log, "a") as fh:
            fh.write(site + "\n")
    if fault:
        want, _, n = fault.rpartition(":")
        if want == site:
            _HITS[site] = _HITS.get(site, 0) + 1
            if _HITS[site] == int(n):
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
