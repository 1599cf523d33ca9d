"""A line on stderr when numba compiles the analysis, which stalls its first use on a fresh
install; loading the compiled code from numba's cache (``cache=True``) says nothing.

numba announces a compilation with its ``numba:compile`` event only after a cache miss, so the
notice comes exactly when it compiles, once per block, before the first function.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from numba.core import event

NOTICE = (
    "Compiling the WSOL box analysis with numba (first use only; later runs load it from "
    "numba's cache)..."
)


class _Notice(event.Listener):
    def __init__(self, message: str) -> None:
        self.message, self.said = message, False

    def on_start(self, event: event.Event) -> None:
        if not self.said:
            self.said = True
            print(self.message, file=sys.stderr, flush=True)

    def on_end(self, event: event.Event) -> None:
        pass


@contextmanager
def compile_notice(message: str = NOTICE) -> Iterator[None]:
    """Print ``message`` once, before the first function that numba compiles inside the block."""
    with event.install_listener("numba:compile", _Notice(message)):
        yield
