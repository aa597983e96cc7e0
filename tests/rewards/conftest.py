"""Reward test fixtures: every registered reward built once per session, tiny and random, offline."""

import socket
from contextlib import contextmanager
from unittest import mock

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two OpenMP threads
    made these tests ~20x slower (measured: 0.5 s vs 10.6 s for one conformance check). Restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("network access attempted in a reward test")


@contextmanager
def no_network():
    """Any socket creation raises (HF_HUB_OFFLINE is set by tests/conftest.py as well)."""
    with mock.patch("socket.socket", _NoNetwork):
        yield


@pytest.fixture(name="no_network")
def no_network_fixture():
    """The :func:`no_network` context manager, for tests."""
    return no_network


@pytest.fixture(scope="session")
def built_rewards():
    """``name -> Reward`` built lazily with ``weights=None`` and sockets disabled; reused by all tests."""
    from diffalign.rewards import load

    cache = {}
    # rewards that need arguments to exist at all (an exemplar set)
    kwargs = {"exemplar_similarity": {"embedder": "toy_clip", "texts": ["a red circle", "a blue square"]}}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            with no_network():
                cache[name] = load(name, **kwargs.get(name, {}))
        return cache[name]

    return get
