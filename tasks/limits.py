"""Each user's share of the host, and when idle servers are stopped: the `.env` settings
USER_MEM_LIMIT, USER_CPU_LIMIT, USER_PIDS_LIMIT, IDLE_CULL_TIMEOUT and IDLE_CULL_MAX_AGE.

Pure: the values are read and checked here, before anything changes, and handed to the hub
already converted (bytes, cores, seconds) under names only `inv` sets (`hub_env`), so the hub
never parses what a person wrote. What only the host can tell (its cores and memory) is
checked by `fits_host` against the engine's own figures.
"""
import re
from dataclasses import dataclass

# Measured on the default user image (docs/limits.md): an idle server takes about 100 MiB,
# and at 160 MiB and below the server or its first kernel is killed as it starts.
MIN_MEMORY = 256 << 20
MIN_PIDS = 64  # an idle server runs 4-6; a kernel with numpy about 20 (its threads count)
MIN_CPU = 0.01  # the engine refuses a CFS quota under 1 ms of its 100 ms period
# The culler checks every quarter of the timeout (at least every 10 s): a timeout shorter
# than a minute would stop servers between two of their activity reports.
MIN_CULL = 60
DEFAULTS = {
    "USER_MEM_LIMIT": "2G",
    "USER_CPU_LIMIT": "1",
    "USER_PIDS_LIMIT": "512",
    "IDLE_CULL_TIMEOUT": "1h",
    "IDLE_CULL_MAX_AGE": "0",
}
KEYS = tuple(DEFAULTS)
_UNITS = {"K": 10, "M": 20, "G": 30, "T": 40}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Limits:
    """What each user's server may take (0: no limit) and when it is culled (0: never)."""
    mem_bytes: int = 2 << 30
    cpus: float = 1.0
    pids: int = 512
    cull_timeout_s: int = 3600
    cull_max_age_s: int = 0


def human_bytes(n: int) -> str:
    """Bytes in the units the settings use (1024-based): 2147483648 -> "2G"."""
    for unit in ("T", "G", "M", "K"):
        size = 1 << _UNITS[unit]
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{n}B"


def human_seconds(s: float) -> str:
    """A duration as people say it: 90 -> "1 min", 5400 -> "1.5 h"."""
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h".replace(".0 h", " h")
    return f"{s / 86400:.1f} d".replace(".0 d", " d")


def parse_memory(text: str, key: str = "USER_MEM_LIMIT") -> tuple:
    """(bytes, problem): "2G", "1.5G", "512M" (1024-based, as JupyterHub reads limits), or 0;
    `key` is the setting the problem names (a profile's `memory` too)."""
    value = text.strip()
    if value == "0":
        return 0, ""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])(?:i?B)?", value, re.IGNORECASE)
    if not match:
        hint = f" (did you mean {value}M?)" if value.isdigit() else ""
        return 0, (f"{key}={text!r} is not a size like 2G, 1.5G or 512M{hint}; "
                   "0 turns the limit off.")
    size = int(float(match.group(1)) * (1 << _UNITS[match.group(2).upper()]))
    if size < MIN_MEMORY:
        return 0, (f"{key}={text!r} is too small for a server to start: an idle "
                   f"server alone takes about 100M; give at least {human_bytes(MIN_MEMORY)}.")
    return size, ""


def parse_cpus(text: str, key: str = "USER_CPU_LIMIT") -> tuple:
    """(cores, problem): "1", "0.5", "2"; 0 turns the limit off."""
    value = text.strip()
    if not re.fullmatch(r"\d+(\.\d+)?", value):
        return 0.0, (f"{key}={text!r} is not a number of cores like 1, 0.5 or 2; "
                     "0 turns the limit off.")
    cpus = float(value)
    if 0 < cpus < MIN_CPU:
        return 0.0, f"{key}={text!r} is below {MIN_CPU} of a core, the least Docker allows."
    return cpus, ""


def parse_pids(text: str) -> tuple:
    """(processes, problem): processes and threads together; 0 turns the limit off."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        return 0, f"USER_PIDS_LIMIT={text!r} is not a whole number of processes like 512; 0 turns it off."
    pids = int(value)
    if 0 < pids < MIN_PIDS:
        return 0, (f"USER_PIDS_LIMIT={text!r} is too small: a kernel with numpy alone runs about "
                   f"20 threads; give at least {MIN_PIDS}.")
    return pids, ""


def parse_duration(key: str, text: str) -> tuple:
    """(seconds, problem): "3600", "90m", "8h", "2d"; 0 turns it off."""
    value = text.strip()
    match = re.fullmatch(r"(\d+)\s*([smhd]?)", value, re.IGNORECASE)
    if not match:
        return 0, f"{key}={text!r} is not a duration like 3600, 90m, 8h or 2d; 0 turns it off."
    seconds = int(match.group(1)) * _SECONDS[match.group(2).lower()]
    if 0 < seconds < MIN_CULL:
        return 0, f"{key}={text!r} is shorter than a minute; give at least 60 (or 0 for never)."
    return seconds, ""


def parse_limits(values: dict) -> tuple:
    """(Limits, problems) from the settings (DEFAULTS for what is not set)."""
    def get(key):
        value = values.get(key, "")
        return value if value.strip() else DEFAULTS[key]

    mem, p1 = parse_memory(get("USER_MEM_LIMIT"))
    cpus, p2 = parse_cpus(get("USER_CPU_LIMIT"))
    pids, p3 = parse_pids(get("USER_PIDS_LIMIT"))
    timeout, p4 = parse_duration("IDLE_CULL_TIMEOUT", get("IDLE_CULL_TIMEOUT"))
    max_age, p5 = parse_duration("IDLE_CULL_MAX_AGE", get("IDLE_CULL_MAX_AGE"))
    problems = [p for p in (p1, p2, p3, p4, p5) if p]
    return Limits(mem, cpus, pids, timeout, max_age), problems


def fits_host(limits: Limits, cores: int, mem_total: int,
              keys=("USER_CPU_LIMIT", "USER_MEM_LIMIT")) -> list:
    """What in the limits this host cannot give (the engine's NCPU and MemTotal): one
    server's limit above the whole host limits nothing, so it is a mistake. `keys`: the
    settings the problems name (a profile's `cpus` and `memory` too)."""
    problems = []
    if limits.cpus > cores:
        problems.append(f"{keys[0]}={limits.cpus:g} is more than this host's {cores} "
                        f"cores; give at most {cores} (or 0 for no limit).")
    if limits.mem_bytes > mem_total:
        problems.append(f"{keys[1]}={human_bytes(limits.mem_bytes)} is more than this "
                        f"host's memory ({human_bytes(mem_total)}); give less (or 0 for no limit).")
    return problems


def hub_env(limits: Limits) -> dict:
    """The variables docker-compose.yml hands the hub: converted values, under names only
    `inv` sets, so the hub refuses to start without them rather than run unlimited."""
    return {
        "USER_MEM_LIMIT_BYTES": str(limits.mem_bytes),
        "USER_CPU_LIMIT_CORES": f"{limits.cpus:g}",
        "USER_PIDS_LIMIT_COUNT": str(limits.pids),
        "IDLE_CULL_TIMEOUT_SECONDS": str(limits.cull_timeout_s),
        "IDLE_CULL_MAX_AGE_SECONDS": str(limits.cull_max_age_s),
    }
