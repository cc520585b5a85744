"""Training the runs of a recipe: one run (resuming an interrupted one), or several in worker processes."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable

from stbin.recipes.base import RESULT_FILE, Run
from stbin.reporting.files import write_text  # atomic: a kill mid-write leaves the old file or none


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def canonical_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration in the form in which two configurations are compared for reuse.

    What does not change the numbers is left out or normalised, so that a run stays reusable when
    its folder moves (``out_dir``; ``init_from`` is compared by the starting run's folder name),
    and in the forms of :func:`stbin.training.config.normalised_config` (keys with default values
    added since it trained, renamed model options, model arguments equal to their defaults).
    """
    from stbin.training.config import normalised_config

    d = normalised_config(cfg)
    d.pop("out_dir", None)
    if d.get("init_from"):
        d["init_from"] = Path(str(d["init_from"])).name
    return d


def resumable_checkpoint(rdir: Path, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The newest complete checkpoint of ``rdir`` if it was written by this very configuration, else None."""
    from stbin.training.trainer import latest_checkpoint

    if not any(rdir.glob("checkpoint-epoch*.pt")):
        return None
    try:
        ckpt = latest_checkpoint(rdir)
    except (OSError, ValueError):  # every checkpoint damaged: train from scratch
        return None
    same = isinstance(ckpt.get("config"), dict) and canonical_config(ckpt["config"]) == canonical_config(cfg)
    return ckpt if same else None


def train_run(cfg: Any, rdir: Path) -> dict[str, Any]:
    """Train one run, continuing its newest checkpoint when that was written by the same configuration
    (an interrupted run resumes where it stopped, bit for bit on CPU); checkpoints of another
    configuration are removed and the run trains from scratch. Returns its record.

    ``time_s`` of a resumed run adds the training time of the epochs done before the interruption
    (their per-epoch time; the evaluation time of those epochs is not counted).
    """
    from stbin.training.trainer import train

    resume = resumable_checkpoint(rdir, cfg.to_dict())
    if resume is None:
        for stale in rdir.glob("checkpoint-epoch*.pt"):  # of an earlier configuration of this run
            stale.unlink()
    (rdir / RESULT_FILE).unlink(missing_ok=True)
    res = train(cfg, resume=resume, log=lambda s: None)
    from stbin.training.trainer import resolve_device

    hist = res["history"]
    ips = [h["images_per_s"] for h in hist if h.get("images_per_s")]
    rec = {"config": cfg.to_dict(), "test": res["test"], "history": hist, "time_s": res.get("time_s"),
           "device": str(resolve_device(cfg.device)), "epochs": len(hist),
           "images_per_s": statistics.median(ips) if ips else None}
    if resume is not None:
        done = int(resume["epoch"])
        rec["resumed_after_epoch"] = done
        rec["time_s"] = (rec["time_s"] or 0.0) + sum(float(h.get("epoch_time_s") or 0.0) for h in res["history"][:done])
    rdir.mkdir(parents=True, exist_ok=True)
    write_text(rdir / RESULT_FILE, json.dumps(rec, indent=1))
    return rec


def train_worker(cfg: Any, rdir: Path) -> tuple[str, Any]:
    """Process-pool entry: ("ok", record) or ("error", exception) for the expected failures."""
    try:
        return "ok", train_run(cfg, rdir)
    except (ValueError, OSError) as e:
        return "error", e


def train_parallel(runs: list[Run], jobs: int, prepare: Callable, fail: Callable, done: Callable,
                  results: dict[str, dict[str, Any]]) -> None:
    """Train ``runs`` with up to ``jobs`` worker processes, each run once the run it starts from is done."""
    import concurrent.futures as cf
    import multiprocessing as mp

    pending = list(runs)
    running: dict[cf.Future, Run] = {}
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        try:
            while pending or running:
                progressed = True
                while progressed and len(running) < jobs:
                    progressed = False
                    for run in pending:
                        if run.init_from is not None and run.init_from not in results:
                            continue  # its starting run is not done yet
                        pending.remove(run)
                        progressed = True
                        prep = prepare(run)
                        if prep is not None:
                            running[pool.submit(train_worker, *prep)] = run
                        break
                if not running:
                    if pending:  # dependencies that never run (cannot happen with a valid recipe)
                        raise ValueError(f"runs wait on unknown starting runs: {[r.key for r in pending]}")
                    break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    run = running.pop(fut)
                    status, value = fut.result()
                    if status == "ok":
                        done(run, value)
                    else:
                        fail(run, value)
        except BaseException:
            for fut in running:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def cached_result(rdir: Path, cfg: dict[str, Any]) -> dict[str, Any] | None:
    f = rdir / RESULT_FILE
    if not f.is_file():
        return None
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(rec.get("config"), dict) and canonical_config(rec["config"]) == canonical_config(cfg)
    return rec if same else None


