"""The response-semantics suites (issue 15): each test ends with a garbage collection.

An app coroutine that a layer abandoned is only finalised by the cyclic collector; collecting at the end
of each test makes its finaliser (and any "coroutine was never awaited" or unraisable exception it
raises) land in the test that abandoned it, where pytest turns it into an error.
"""

from __future__ import annotations

import gc
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    yield
    gc.collect()
