"""Benchmark (not a test): `inv backup` and `inv restore` against plain tar of the same
volume, measured in the same run, and their peak memory for a small and a large volume.

    .venv/bin/python bench/backup.py [--repeat 3]

Prints a table and writes bench/results/backup.json. Everything runs as a user would run it,
each in its own process, start-up included:

- ours:      `inv backup --user NAME` / `inv restore --user NAME --from FILE` (checks,
             hashes, manifest, the archive API, the swap; a fresh volume for each restore)
- tar:       `docker run --rm -v VOL:/v -v DIR:/out IMAGE sh -c 'tar -C /v -cf /out/x.tar .
             && sync /out/x.tar'` (a backup must reach the disk: ours fsyncs too) and
             `... tar -C /v -xf /out/x.tar` into a fresh volume: plain tar, the floor
- api:       the Docker archive API with nothing on top (get_archive to a file, put_archive
             of a file), the transport ours uses
- stdout:    `docker run --rm -v VOL:/v IMAGE tar -C /v -cf - . > file`, once: tar through
             the CLI's attached output, for reference

Peak memory is each process's maximum resident set (GNU time's %M). The volumes and
the project copy carry a label and are removed by it at the end. Takes about 2-3 minutes.
"""
import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "backup.json"
PROJECT_FILES = ["tasks.py", "tasks", "hub", "notebook", "docker-compose.yml", ".env", "userlist"]
LABEL = "org.jupyterhub-deploy"
TAR_IMAGE = "jupyterhub-deploy-base:bookworm"
MiB = 1 << 20


# --- the child modes: the raw archive API, in a process of its own ------------------------------

@contextmanager
def volume_box(volume: str, project: str):
    """A created, never started container with `volume` at /v: what the archive API needs."""
    import docker
    from docker.types import Mount

    box = docker.from_env().containers.create(
        f"{project}-hub:latest", labels={f"{LABEL}.project": project},
        mounts=[Mount("/v", volume, type="volume", no_copy=True)], network_disabled=True)
    try:
        yield box
    finally:
        box.remove()


def raw_get(volume: str, out: str, project: str) -> None:
    with volume_box(volume, project) as box, open(out, "wb") as file:
        chunks, _ = box.get_archive("/v", chunk_size=MiB)
        for chunk in chunks:
            file.write(chunk)
        file.flush()
        os.fsync(file.fileno())


def raw_put(volume: str, source: str, project: str) -> None:
    with volume_box(volume, project) as box, open(source, "rb") as file:
        box.put_archive("/v", iter(lambda: file.read(MiB), b""))


# --- measuring ----------------------------------------------------------------------------------

GNU_TIME = "/usr/bin/time"


def run(argv, *, cwd=None, env=None, stdout=None) -> tuple:
    """(seconds, peak RSS in MiB) of one process; raises if it fails. The peak comes from
    GNU time's wait4: a child forked straight from this (large) process would count this
    process's memory as its own, since the kernel carries the high-water mark over exec."""
    with tempfile.NamedTemporaryFile("r") as peak:
        wrapped = [GNU_TIME, "-f", "%M", "-o", peak.name, *argv] if os.path.exists(GNU_TIME) \
            else list(argv)
        started = time.monotonic()
        process = subprocess.run(wrapped, cwd=cwd, env=env, stdout=stdout or subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        seconds = time.monotonic() - started
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{process.stderr.decode()}")
        text = peak.read().strip().splitlines()
    return seconds, (int(text[-1]) / 1024 if text else float("nan"))


def docker(*args, **kwargs):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, **kwargs)


class Bench:
    def __init__(self, repeat: int):
        self.repeat = repeat
        self.project = f"jhbackupbench{uuid.uuid4().hex[:6]}"
        self.work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
        self.root = self.work / "project"
        self.out = self.work / "out"
        self.out.mkdir()
        self.root.mkdir()
        for name in PROJECT_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, self.root / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, self.root / name)
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": self.project}
        self.results = {}

    def volume(self, user: str) -> str:
        return f"{self.project}-user-{user}"

    def make_volume(self, name: str, user: str = "") -> None:
        labels = ["--label", f"{LABEL}.project={self.project}"]
        if user:
            labels += ["--label", f"{LABEL}.role=user-volume", "--label", f"{LABEL}.user={user}"]
        docker("volume", "create", *labels, name)

    def remove_volume(self, name: str) -> None:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)

    def fill(self, user: str, big_files: int, big_size: int, small_files: int) -> int:
        """A user's volume: a few big files and many small ones in folders; returns bytes."""
        volume = self.volume(user)
        self.make_volume(volume, user)
        rng = random.Random(user)
        total = 0

        def stream():
            nonlocal total

            def member(name, size, kind=tarfile.REGTYPE):
                info = tarfile.TarInfo(name)
                info.type, info.size, info.uid, info.gid = kind, size, 1000, 100
                info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
                info.mtime = 1_700_000_000
                return info.tobuf(tarfile.PAX_FORMAT)

            block = rng.randbytes(MiB)
            for i in range(big_files):
                yield member(f"big{i}.bin", big_size)
                for offset in range(0, big_size, MiB):  # no two MiB alike
                    yield (i * 1_000_003 + offset).to_bytes(8, "big") + block[8:min(
                        MiB, big_size - offset)]
                total += big_size
            for folder in range(small_files // 100 + 1):
                yield member(f"project{folder}", 0, tarfile.DIRTYPE)
                for i in range(min(100, small_files - folder * 100)):
                    size = rng.randrange(100, 20_000)
                    yield member(f"project{folder}/file{i}.py", size)
                    yield rng.randbytes(size) + bytes(-size % 512)
                    total += size
            yield bytes(1024)

        with volume_box(volume, self.project) as box:
            box.put_archive("/v", stream())
        return total

    def inv(self, *args):
        return run([sys.executable, "-m", "invoke", *args], cwd=self.root, env=self.env)

    def build_images(self) -> None:
        """Each deployment has its own images: `inv build` makes this run's, and the
        restores' project gets the same hub image under its own name and label (backups
        and restores run their helpers from it)."""
        self.inv("build")
        target = f"{self.project}r"
        docker("build", "-q", "-t", f"{target}-hub:latest",
               "--label", f"{LABEL}.project={target}", "-", input=f"FROM {self.project}-hub:latest\n")

    def median(self, measure) -> dict:
        samples = [measure(i) for i in range(self.repeat)]
        return {"seconds": statistics.median(s for s, _ in samples),
                "samples": [round(s, 3) for s, _ in samples],
                "peak_rss_mib": max(m for _, m in samples)}

    def measure(self, user: str, size: int) -> dict:
        volume, out = self.volume(user), self.out
        result = {"volume_bytes": size}
        print(f"\n{user}: {size / MiB:.0f} MiB of file data")

        def ours_backup(i):
            for old in out.glob(f"{volume}-*"):
                old.unlink()
            subprocess.run(["sync"])
            return self.inv("backup", "--user", user, "--dir", str(out))

        result["ours_backup"] = self.median(ours_backup)
        archive = next(p for p in out.glob(f"{volume}-*.tar"))
        result["archive_bytes"] = archive.stat().st_size

        def tar_backup(i):
            subprocess.run(["sync"])
            # Then fsync the file, as a backup must (ours does before naming it complete).
            return run(["docker", "run", "--rm", "--network", "none",
                        "--label", f"{LABEL}.project={self.project}", "-v", f"{volume}:/v:ro",
                        "-v", f"{out}:/out", TAR_IMAGE, "sh", "-c",
                        "tar -C /v -cf /out/plain.tar . && sync /out/plain.tar"])

        result["tar_backup"] = self.median(tar_backup)

        def api_backup(i):
            subprocess.run(["sync"])
            return run([sys.executable, __file__, "--raw-get", volume, str(out / "api.tar"),
                        self.project])

        result["api_backup"] = self.median(api_backup)

        restored = self.volume(f"{user}-restored")
        target_project = f"{self.project}r"
        target = f"{target_project}-user-{user}"

        def ours_restore(i):
            self.remove_volume(target)
            subprocess.run(["sync"])
            env = {**self.env, "COMPOSE_PROJECT_NAME": target_project}
            seconds = run([sys.executable, "-m", "invoke", "restore", "--user", user, "--from",
                           str(archive)], cwd=self.root, env=env)
            return seconds

        result["ours_restore"] = self.median(ours_restore)
        self.remove_volume(target)

        def tar_restore(i):
            self.remove_volume(restored)
            self.make_volume(restored)
            subprocess.run(["sync"])
            return run(["docker", "run", "--rm", "--network", "none",
                        "--label", f"{LABEL}.project={self.project}", "-v", f"{restored}:/v",
                        "-v", f"{out}:/out:ro", TAR_IMAGE, "tar", "-C", "/v", "-xf",
                        "/out/plain.tar"])

        result["tar_restore"] = self.median(tar_restore)

        def api_restore(i):
            self.remove_volume(restored)
            self.make_volume(restored)
            subprocess.run(["sync"])
            return run([sys.executable, __file__, "--raw-put", restored, str(out / "plain.tar"),
                        self.project])

        result["api_restore"] = self.median(api_restore)
        self.remove_volume(restored)
        for key in ("ours_backup", "tar_backup", "api_backup", "ours_restore", "tar_restore",
                    "api_restore"):
            result[key]["mb_per_s"] = round(size / 1e6 / result[key]["seconds"], 1)
        result["ratio_backup_vs_tar"] = round(result["ours_backup"]["seconds"] /
                                              result["tar_backup"]["seconds"], 2)
        result["ratio_backup_vs_api"] = round(result["ours_backup"]["seconds"] /
                                              result["api_backup"]["seconds"], 2)
        result["ratio_restore_vs_tar"] = round(result["ours_restore"]["seconds"] /
                                               result["tar_restore"]["seconds"], 2)
        result["ratio_restore_vs_api"] = round(result["ours_restore"]["seconds"] /
                                               result["api_restore"]["seconds"], 2)
        return result

    def extras(self, user: str, size: int) -> dict:
        """Once, on the large volume: --compress, and tar through the CLI's output."""
        volume, out = self.volume(user), self.out
        for old in out.glob(f"{volume}-*"):
            old.unlink()
        subprocess.run(["sync"])
        seconds, rss = self.inv("backup", "--user", user, "--dir", str(out), "--compress")
        archive = next(p for p in out.glob(f"{volume}-*.tar.gz"))
        compressed = {"seconds": round(seconds, 3), "peak_rss_mib": rss,
                      "archive_bytes": archive.stat().st_size,
                      "mb_per_s": round(size / 1e6 / seconds, 1)}
        subprocess.run(["sync"])
        with open(out / "stdout.tar", "wb") as file:
            seconds, _ = run(["docker", "run", "--rm", "--network", "none", "--label",
                              f"{LABEL}.project={self.project}", "-v", f"{volume}:/v:ro",
                              TAR_IMAGE, "tar", "-C", "/v", "-cf", "-", "."], stdout=file)
        stdout = {"seconds": round(seconds, 3), "mb_per_s": round(size / 1e6 / seconds, 1)}
        return {"ours_backup_compressed": compressed, "tar_stdout_backup": stdout}

    def cleanup(self) -> None:
        """By label: this run's project, and the one restores went to."""
        for project in (self.project, f"{self.project}r"):
            for kind in ("container", "volume", "network", "image"):
                listed = subprocess.run(
                    ["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                     "--filter", f"label={LABEL}.project={project}"],
                    capture_output=True, text=True).stdout.split()
                if listed:
                    subprocess.run(["docker", kind, "rm", "-f", *listed], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def table(results: dict) -> str:
    small, large = results["small"], results["large"]
    rows = [("", f"small ({small['volume_bytes'] / MiB:.0f} MiB)",
             f"large ({large['volume_bytes'] / MiB:.0f} MiB)")]

    def cell(r, key):
        return f"{r[key]['seconds']:.2f} s, {r[key]['mb_per_s']:.0f} MB/s"

    for key, name in [("ours_backup", "inv backup"), ("tar_backup", "tar (floor)"),
                      ("api_backup", "archive API, raw"), ("ours_restore", "inv restore"),
                      ("tar_restore", "tar -x (floor)"), ("api_restore", "archive API, raw")]:
        rows.append((name, cell(small, key), cell(large, key)))
    for key, name in [("ratio_backup_vs_tar", "backup / tar (target <= 1.3)"),
                      ("ratio_backup_vs_api", "backup / raw API"),
                      ("ratio_restore_vs_tar", "restore / tar -x (target <= 1.5)"),
                      ("ratio_restore_vs_api", "restore / raw API")]:
        rows.append((name, f"{small[key]:.2f}x", f"{large[key]:.2f}x"))
    rows.append(("peak RSS, inv backup", f"{small['ours_backup']['peak_rss_mib']:.0f} MiB",
                 f"{large['ours_backup']['peak_rss_mib']:.0f} MiB"))
    rows.append(("peak RSS, inv restore", f"{small['ours_restore']['peak_rss_mib']:.0f} MiB",
                 f"{large['ours_restore']['peak_rss_mib']:.0f} MiB"))
    extra = results["large_extras"]
    rows.append(("inv backup --compress", "",
                 f"{extra['ours_backup_compressed']['seconds']:.2f} s, "
                 f"{extra['ours_backup_compressed']['archive_bytes'] / large['archive_bytes']:.0%}"
                 " of the size"))
    rows.append(("tar to the CLI's stdout", "", f"{extra['tar_stdout_backup']['seconds']:.2f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--raw-get", nargs=3, metavar=("VOLUME", "FILE", "PROJECT"))
    parser.add_argument("--raw-put", nargs=3, metavar=("VOLUME", "FILE", "PROJECT"))
    args = parser.parse_args()
    if args.raw_get:
        return raw_get(*args.raw_get)
    if args.raw_put:
        return raw_put(*args.raw_put)
    bench = Bench(args.repeat)
    started = time.monotonic()
    try:
        bench.build_images()
        load_before = os.getloadavg()
        small = bench.fill("small", big_files=1, big_size=4 * MiB, small_files=300)
        large = bench.fill("large", big_files=4, big_size=64 * MiB, small_files=3000)
        results = {"small": bench.measure("small", small), "large": bench.measure("large", large)}
        results["large_extras"] = bench.extras("large", large)
        results["machine"] = {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "engine": docker("version", "--format", "{{.Server.Version}}").stdout.strip(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "repeat": args.repeat, "seconds": round(time.monotonic() - started, 1),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        bench.cleanup()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    print(f"\n(median of {args.repeat}; load average {results['machine']['load_average_before']}"
          f" before, {results['machine']['load_average_after']} after; "
          f"{results['machine']['seconds']:.0f} s in all; written to "
          f"{RESULTS.relative_to(REPO)})")


if __name__ == "__main__":
    main()
