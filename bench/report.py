"""What a run prints and keeps: the table of figures against their floors, the JSON
results file and the plot of the latency distributions."""
import json
import math
from dataclasses import asdict, dataclass


@dataclass
class Row:
    """One figure of one benchmark, its floor and the target it is held to.

    kind "ratio": value / floor <= target; "delta": value - floor <= target (same unit);
    "max": value <= target (no floor); "info": reported (with its ratio to a floor if it
    has one), no target."""
    bench: str
    figure: str
    value: float
    unit: str
    floor: float = math.nan
    kind: str = "info"
    target: float = math.nan
    floor_figure: str = ""

    @property
    def against_floor(self) -> float:
        if self.kind in ("ratio", "info"):
            return self.value / self.floor if self.floor else math.nan
        if self.kind == "delta":
            return self.value - self.floor
        return math.nan

    @property
    def ok(self):
        """True/False against the target, None when there is none."""
        if self.kind == "info" or math.isnan(self.value) or math.isnan(self.target):
            return None
        measured = self.value if self.kind == "max" else self.against_floor
        return bool(measured <= self.target)

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(against_floor=self.against_floor, ok=self.ok)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit in ("", "count"):
        return f"{value:g}"
    return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"


def _against(row: Row) -> str:
    if row.kind in ("ratio", "info") and not math.isnan(row.against_floor):
        return f"{row.against_floor:.2f}x"
    if row.kind == "delta":
        return f"{row.against_floor:+.2f} {row.unit}"
    return ""


def _target(row: Row) -> str:
    if math.isnan(row.target):
        return ""
    if row.kind == "ratio":
        return f"<= {row.target:g}x"
    if row.kind == "delta":
        return f"<= +{row.target:g} {row.unit}"
    if row.kind == "max":
        return f"<= {row.target:g}"
    return ""


def table(rows: list) -> str:
    """A Markdown table (it goes into the README as it is)."""
    lines = ["| bench | figure | value | floor | vs floor | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        floor = _number(row.floor, row.unit) + (f" ({row.floor_figure})" if row.floor_figure else "")
        met = {True: "yes", False: "**no**", None: ""}[row.ok]
        lines.append(f"| {row.bench} | {row.figure} | {_number(row.value, row.unit)} | "
                     f"{floor if not math.isnan(row.floor) else '-'} | {_against(row)} | "
                     f"{_target(row)} | {met} |")
    return "\n".join(lines)


def write_json(path, meta: dict, rows: list, details: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(
        {"meta": meta, "table": [r.to_json() for r in rows], "benchmarks": details},
        indent=2, default=str))


def plot(path, distributions: dict, title: str) -> None:
    """One panel per benchmark; in each, the measured distribution beside its floor (box
    and every sample as a point). distributions: {panel: (unit, {label: [values]})}."""
    import random

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels = [(name, unit, series) for name, (unit, series) in distributions.items()
              if any(series.values())]
    if not panels:
        return
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    jitter = random.Random(0)
    for ax, (name, unit, series) in zip(axes.flat, panels):
        labels = list(series)
        data = [series[label] for label in labels]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        for position, values in enumerate(data, start=1):
            ax.scatter([position + jitter.uniform(-0.12, 0.12) for _ in values], values,
                       s=10, alpha=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(unit)
        # A few stragglers (a busy moment on the machine) should not flatten the boxes.
        from bench.stats import percentile

        everything = [v for values in data for v in values]
        top = 1.3 * max(percentile(values, 99) for values in data if values)
        above = sum(v > top for v in everything)
        ax.set_ylim(0, top if above else None)
        if above:
            ax.annotate(f"{above} above", xy=(0.98, 0.97), xycoords="axes fraction",
                        ha="right", va="top", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
