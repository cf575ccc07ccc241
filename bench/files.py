"""Benchmark of file transport: SDK → agent (spooled) → collector, and downloads, as separate processes.

    python bench/files.py [--big-mib 1024] [--small-files 10000] [--small-bytes 1024]

Prints upload throughput (until `upload_file` returns: the agent holds the file; and until
`flush()` returns: the collector committed it), download throughput, the same for many small
files (files/s and MB/s), and the peak RSS (VmHWM) of the agent, the collector and this (SDK)
process after each phase. Each process's peak is for its whole life so far.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.procs import Cluster, short_tmpdir


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def own_hwm_mib() -> float:
    # VmHWM rather than ru_maxrss, which Linux carries over from the parent across exec
    return vm_hwm_mib(os.getpid())


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        i = 0
        while left:
            n = min(left, len(block))
            # Vary each MiB a little so that the content is not one repeated block.
            f.write(i.to_bytes(8, "little") + block[8:n] if n >= 8 else block[:n])
            left -= n
            i += 1


def rss_line(cluster: Cluster) -> str:
    return (
        f"peak RSS: agent {vm_hwm_mib(cluster.agent.pid):.0f} MiB, collector {vm_hwm_mib(cluster.server.pid):.0f} MiB, "
        f"SDK process {own_hwm_mib():.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--small-files", type=int, default=10_000)
    ap.add_argument("--small-bytes", type=int, default=1024)
    args = ap.parse_args()

    root = short_tmpdir("rwbench")
    cluster = Cluster(root, log_level="info").start()
    try:
        os.environ.update(cluster.env())
        from runwire import Experiment, Workspace

        work = root / "work"
        work.mkdir()
        os.chdir(work)
        experiment = Experiment(Workspace.from_config(), "bench-files")
        print(f"after start: {rss_line(cluster)}")

        # --- one big file ---
        size = args.big_mib * 1024 * 1024
        big = root / "big.bin"
        make_file(big, size)
        run = experiment.start_logging(snapshot_directory=None)
        t0 = time.perf_counter()
        run.upload_file("big.bin", str(big))
        t1 = time.perf_counter()
        run.flush()
        t2 = time.perf_counter()
        mb = size / 1e6
        print(
            f"upload {args.big_mib} MiB: to the agent {mb / (t1 - t0):.0f} MB/s ({t1 - t0:.1f} s), "
            f"committed at the collector {mb / (t2 - t0):.0f} MB/s ({t2 - t0:.1f} s)"
        )
        print(f"  {rss_line(cluster)}")
        t0 = time.perf_counter()
        run.download_file("big.bin", str(root / "back.bin"))
        t1 = time.perf_counter()
        print(f"download {args.big_mib} MiB: {mb / (t1 - t0):.0f} MB/s ({t1 - t0:.1f} s)")
        print(f"  {rss_line(cluster)}")
        assert (root / "back.bin").stat().st_size == size
        for p in (big, root / "back.bin"):
            p.unlink()
        run.complete()

        # --- many small files ---
        n = args.small_files
        folder = root / "small"
        folder.mkdir()
        for i in range(n):
            sub = folder / f"d{i // 1000:03d}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{i:05d}.txt").write_bytes(os.urandom(args.small_bytes))
        run = experiment.start_logging(snapshot_directory=None)
        t0 = time.perf_counter()
        run.upload_folder("small", str(folder))
        t1 = time.perf_counter()
        run.flush()
        t2 = time.perf_counter()
        total = n * args.small_bytes / 1e6
        print(
            f"upload {n} files of {args.small_bytes} B: to the agent {n / (t1 - t0):.0f} files/s ({t1 - t0:.1f} s), "
            f"committed {n / (t2 - t0):.0f} files/s ({t2 - t0:.1f} s, {total / (t2 - t0):.1f} MB/s)"
        )
        print(f"  {rss_line(cluster)}")
        t0 = time.perf_counter()
        paths = run.download_files(prefix="small", output_directory=str(root / "small-back"))
        t1 = time.perf_counter()
        assert len(paths) == n
        print(f"download {n} files: {n / (t1 - t0):.0f} files/s ({t1 - t0:.1f} s, {total / (t1 - t0):.1f} MB/s)")
        print(f"  {rss_line(cluster)}")
        run.complete()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
