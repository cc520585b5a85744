"""Streaming vs in-memory data, and the memory of an image-folder run.

    python benchmarks/bench_streaming.py throughput [--train-limit 20000]
    python benchmarks/bench_streaming.py memory [--images 20000 --size 256] [--folder DIR] [--keep]

``throughput``: one epoch of the ``sbn_mnist`` network on MNIST three ways in the same process:
in memory (the fast path), streamed through a DataLoader (``data.stream = true``) in the
main process, and with 2 worker processes; training images/s of each and the ratios.

``memory``: writes a folder of ``--images`` random-texture RGB JPEGs of ``--size`` pixels
(10 classes; decoded they are larger than one would hold in memory) and a folder of 500 such
images, trains one epoch of the ``tiny`` preset's network on each with ``image_folder``
(random resized crops to 32x32, flips, 2 workers) in a child process, and samples the
resident memory of that process and its workers every 0.2 s; reports both peaks next to the
decoded size of the folders (bounded memory: the peak does not grow with the folder). The
large folder is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def throughput(args: argparse.Namespace) -> None:
    import stbin

    base = {"preset": "sbn_mnist", "device": "cpu", "train": {"epochs": 1, "batch_size": 100},
            "data": {"train_limit": args.train_limit, "test_limit": 1000}, "eval": {"ensemble": 0, "modes": ["mode"]}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, data in (("in memory", {}), ("streamed, 0 workers", {"stream": True}),
                            ("streamed, 2 workers", {"stream": True, "workers": 2})):
            cfg = {**base, "out_dir": f"{tmp}/{len(rows)}", "data": {**base["data"], **data}}
            r = stbin.train(cfg, log=None)
            rows.append((label, r.metrics["images_per_s"], r.test["mode"]))
    ref = rows[0][1]
    print(f"| path | training images/s | ratio to in-memory | test accuracy (mode) |\n|---|--:|--:|--:|")
    for label, ips, acc in rows:
        print(f"| {label} | {ips:.0f} | {ips / ref:.2f} | {acc:.2f}% |")


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _peak(cmd: list[str]) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return peak, time.perf_counter() - t0, out


def make_folder(root: Path, n: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    per_class = max(1, n // 10)
    for split, count in (("train", per_class), ("val", max(1, per_class // 20))):
        for c in range(10):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                low = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
                im = Image.fromarray(low).resize((size, size), Image.BILINEAR)
                im.save(d / f"{i:06d}.jpg", quality=85)


def memory(args: argparse.Namespace) -> None:
    folder = Path(args.folder or tempfile.mkdtemp(prefix="stbin-bench-folder-"))
    small = Path(tempfile.mkdtemp(prefix="stbin-bench-small-"))
    try:
        if not (folder / "train").is_dir():
            t0 = time.perf_counter()
            make_folder(folder, args.images, args.size)
            took = time.perf_counter() - t0
            print(f"wrote {args.images} JPEGs of {args.size}x{args.size} to {folder} in {took:.0f} s")
        make_folder(small, 500, args.size)
        cmd = [sys.executable, "-m", "stbin", "train", "--preset", "tiny", "--epochs", "1", "--no-progress",
               "--device", "cpu", "--batch-size", "100", "--set", "eval.ensemble=0", "--set", 'eval.modes=["mode"]',
               "--dataset", "image_folder", "--set", "data.workers=2",
               "--set", 'data.options={image_size=32, augment="resized_crop", hflip=true}']
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for label, root in (("small folder", small), ("large folder", folder)):
                files = sum(len(fs) for _, _, fs in os.walk(root))
                disk = sum(f.stat().st_size for f in root.rglob("*.jpg"))
                peak, wall, out = _peak(cmd + ["--data-root", str(root), "--out", f"{tmp}/{len(rows)}"])
                rows.append((label, files, disk, files * args.size * args.size * 3, peak, wall))
        gib, mib = 1024 ** 3, 1024 ** 2
        print("| image_folder run | images | on disk | decoded (uint8) | peak RSS (process + 2 workers) | wall |\n"
              "|---|--:|--:|--:|--:|--:|")
        for label, files, disk, decoded, peak, wall in rows:
            print(f"| {label} | {files} | {disk / mib:.0f} MiB | {decoded / gib:.2f} GiB | {peak / mib:.0f} MiB | "
                  f"{wall:.0f} s |")
    finally:
        shutil.rmtree(small, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--train-limit", type=int, default=20000)
    m = sub.add_parser("memory")
    m.add_argument("--images", type=int, default=20000)
    m.add_argument("--size", type=int, default=256)
    m.add_argument("--folder")
    m.add_argument("--keep", action="store_true")
    args = p.parse_args()
    throughput(args) if args.what == "throughput" else memory(args)


if __name__ == "__main__":
    main()
