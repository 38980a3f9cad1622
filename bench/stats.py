"""Order statistics for benchmark samples."""
import math
import os


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


def host_cpu() -> tuple:
    """(busy, total) CPU seconds of the whole host since boot, from /proc/stat (Linux): busy
    is everything but idle and iowait, summed over every core."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def cpu_use(before: tuple, after: tuple) -> dict:
    """Between two host_cpu() readings: CPU-seconds used, and the share of all cores busy."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return {"cpu_s": busy, "busy_share": busy / total if total else math.nan}
