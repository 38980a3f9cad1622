"""Benchmarks of a deployment against floors measured in the same run (see
docs/performance.md): `python -m bench.run`. The load driver (`bench.driver`) is usable alone."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The integration tier already has "a person with a browser" (hubclient) and "a copy of the
# project driven by `inv`" (deployment_support): the bench reuses them rather than copies.
_HELPERS = str(REPO / "tests" / "integration")
if _HELPERS not in sys.path:
    sys.path.append(_HELPERS)
