"""A pipeline step for tests/test_pipeline.py, run as ``python -m pipeline_step <folder> <word>``
(``tests/`` on ``PYTHONPATH``): appends ``<word>`` to ``<folder>/steps.txt`` and prints it; exits 3
instead when the environment's ``PIPELINE_STEP_FAIL`` is ``<word>``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    folder, word = Path(sys.argv[1]), sys.argv[2]
    if os.environ.get("PIPELINE_STEP_FAIL") == word:
        print(f"step {word} fails as asked", flush=True)
        sys.exit(3)
    with (folder / "steps.txt").open("a") as file:
        file.write(word + "\n")
    print(f"step {word} ran", flush=True)
