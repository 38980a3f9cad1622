"""Order statistics for benchmark samples."""
import math


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100), interpolating between the closest ranks; nan when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values) -> dict:
    """n, p50, p95, min and max of a sample, in its own unit."""
    values = list(values)
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }
