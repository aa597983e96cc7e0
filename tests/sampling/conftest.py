"""One intra-op thread for the tiny models of these tests (tests/helpers.py)."""

from tests.helpers import one_thread as _one_thread  # noqa: F401
