"""Entry point for `inv`: it loads this file as the module `tasks`.

Make this module behave like the `tasks/` package beside it, so that
`tasks.root` and friends import the same way under `inv` and under pytest.
"""
import sys
from pathlib import Path

__path__ = [str(Path(__file__).with_suffix(""))]

# invoke turns off writing .pyc files (meant for a lone tasks.py); the package behind it
# would then be compiled again on every run. Keep Python's default unless the user turned
# it off (`python -B` or PYTHONDONTWRITEBYTECODE).
if not sys.flags.dont_write_bytecode:
    sys.dont_write_bytecode = False

from tasks.root import ns  # noqa: E402,F401  (the root collection invoke looks for)
