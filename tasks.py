"""Entry point for `inv`: it loads this file as the module `tasks`.

Make this module behave like the `tasks/` package beside it, so that
`tasks.root` and friends import the same way under `inv` and under pytest.
"""
from pathlib import Path

__path__ = [str(Path(__file__).with_suffix(""))]

from tasks.root import ns  # noqa: E402,F401  (the root collection invoke looks for)
