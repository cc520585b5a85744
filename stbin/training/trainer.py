"""The trainer behind ``stbin train``: data, model, optimizer with the latent-weight rule,
schedule, per-epoch atomic checkpoints, bit-exact resume on CPU, DDP, evaluation, report.

Resume: a checkpoint holds the model, optimizer and scheduler states, the torch RNG state
(and CUDA's), the data-order and augmentation generators, the epoch, the step and the
metrics history; checkpoints are written at epoch ends, so a resumed run continues exactly
where the straight run would be (on CPU: bit for bit). A run killed mid-epoch loses the
unfinished epoch only; one killed while writing leaves at worst a stray temporary file and
the previous checkpoint, from which it resumes.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from stbin.reporting.markdown import plural
from stbin.training.checkpoint import (CHECKPOINT_GLOB, CheckpointError, check_finite, check_same_model,  # noqa: F401  (re-exported)
                                       checkpoint_path, find_checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint)
from stbin.training.config import Config
from stbin.training.evaluation import evaluate  # noqa: F401  (re-exported)
from stbin.training.resume_state import check_training_state, restore_training_state, rng_state
from stbin.training import distributed as D
from stbin.training.lock import run_folder_lock


class TrainingDiverged(ValueError):
    """The loss or the weights became non-finite (NaN or infinite): the run is stopped, not continued."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA GPU is available")
    return dev


def check_writable(out_dir: str | Path) -> Path:
    """Create ``out_dir`` and check that files can be written there (OSError with the reason if not)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to the output folder {out}: {e.strerror or e}") from None
    return out


def init_weights(model: nn.Module, path: str | Path, warn: Callable[[str], None] | None = None) -> int:
    """Load into ``model`` the newest checkpoint at ``path`` with :func:`stbin.nn.load_float_state_dict`:
    tensors whose names and shapes match are copied, float weights of layers that are binary here
    are transferred to their latent weights (e.g. a full-precision run into its binary twin);
    module settings (``_extra_state``: bits, STE) stay this model's. Returns how many tensors were
    loaded; ValueError if none match."""
    from stbin.nn import load_float_state_dict

    ckpt = latest_checkpoint(path, warn)
    check_finite(ckpt["model_state"], ckpt["_path"], "model_state")
    report = load_float_state_dict(model, ckpt["model_state"])
    if not any(not k.endswith("num_batches_tracked") for k in report.copied) and not report.transferred:
        raise ValueError(f"init_from {path}: no parameter of the checkpoint matches this model")
    return report.n_loaded


def model_kwargs_for(cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> tuple[str, dict[str, Any]]:
    """The model name and its keyword arguments, with the data-derived ones filled in."""
    from stbin.models import MODELS

    name = cfg.model["name"]
    kwargs = {k: v for k, v in cfg.model.items() if k != "name"}
    from stbin.plugins import is_plugin  # [plugins] a model factory named by import path
    if is_plugin(name):
        for k in ("input_shape", "num_classes"):
            if k in kwargs:
                raise ValueError(f"model.{k} is filled in from the data for model plugin {name!r}; remove it")
        return name, {"input_shape": tuple(int(s) for s in input_shape), "num_classes": int(num_classes), **kwargs}
    builder = MODELS.get(name)
    params = inspect.signature(builder).parameters
    derived = {"in_channels": input_shape[0], "image_size": input_shape[-1], "num_classes": num_classes,
               "in_features": math.prod(input_shape)}
    for k, v in derived.items():
        if k in params and k not in kwargs:
            kwargs[k] = v
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        from stbin._registry import unknown_name_message
        for k in kwargs:
            if k not in params:
                raise ValueError(unknown_name_message(f"argument of model {name!r}", k, list(params)))
    from stbin.training.model_args import check_model_kwargs
    check_model_kwargs(name, kwargs)
    return name, kwargs


def build_optimizer(model: nn.Module, cfg: Config) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer of the real-valued (and, except for Bop, latent) parameters, and its companion:
    the attached :class:`~stbin.optim.LatentWeightRule`, or the :class:`~stbin.optim.Bop` of the
    latent weights (``optim.name = "bop"``: Bop on the binary weights, Adam on the rest), or None."""
    from stbin.optim import Bop, LatentWeightRule, split_parameters
    from stbin.optim.params import binary_layers

    o = cfg.optim
    latent, other = split_parameters(model)
    groups = []
    if other:
        groups.append({"params": other, "weight_decay": o.weight_decay, "lr": o.lr})
    if latent and o.name != "bop":
        groups.append({"params": latent, "weight_decay": o.latent_weight_decay, "lr": o.lr * o.latent_lr_scale})
    if not groups:
        raise ValueError(f"optimizer {o.name!r}: the model has no parameters for it to train")
    if o.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    elif o.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))
    else:
        opt = torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas))
    if o.name == "bop":
        if not latent or any(layer.weights != "sign" for layer in binary_layers(model)):
            raise ValueError("optim.name = bop needs binary layers with weights = sign (Bop flips deterministic "
                             "binary weights); set model.weights=\"sign\"")
        return opt, Bop(latent, threshold=o.bop_threshold, gamma=o.bop_gamma)
    rule = None
    if latent:
        rule = LatentWeightRule(model, gradient=o.latent, project=o.projection, clip=o.clip).attach(opt)
    return opt, rule


def train(cfg: Config, resume: dict[str, Any] | None = None, log: Callable[[str], None] = print,
          progress: bool | None = None, plots: bool | None = None,
          loggers: list[Any] | tuple[Any, ...] = ()) -> dict[str, Any]:
    """Run ``cfg`` (optionally continuing the checkpoint dict ``resume``); returns the results.

    Results: ``{"test": {mode: acc, ..., "ensemble": acc}, "history": [...], "out_dir",
    "checkpoint", "report", "time_s"}`` (files are written by rank 0 only). ``plots``: curves in
    the report (True: matplotlib required, checked before training; None: if installed).

    The output folder is locked for the run (:mod:`stbin.training.lock`; by rank 0 of a
    distributed run): a second run into it raises :class:`~stbin.training.lock.RunFolderInUse`.
    A non-finite loss or weight stops the run with :class:`TrainingDiverged` (epoch and step).
    """
    cfg.validate()
    main = D.env_rank() == 0
    if main:
        check_writable(cfg.out_dir)
    with run_folder_lock(cfg.out_dir, enabled=main):
        return _train(cfg, resume, log, progress, plots, loggers)


def _test_kill_point(epoch: int) -> None:
    """Test hook: ``STBIN_TEST_KILL_AFTER_EPOCH=N`` makes the run SIGKILL itself right after its
    epoch-N checkpoint, so that the kill/resume test never depends on timing."""
    if os.environ.get("STBIN_TEST_KILL_AFTER_EPOCH") == str(epoch):
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def _diverged(epoch: int, step: int, what: str, cfg: Config) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged at epoch {epoch}, step {step}: {what}; the run is stopped "
                            f"(no checkpoint of this epoch is written); try a smaller optim.lr (now {cfg.optim.lr:g})")


def _train(cfg: Config, resume: dict[str, Any] | None, log: Callable[[str], None],
           progress: bool | None, plots: bool | None, loggers: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
    from tqdm import tqdm

    from stbin.models import build_model
    from stbin.training.data_source import evaluate_source, open_source

    t_start = time.perf_counter()  # cfg was validated by train()
    if plots:
        from stbin.reporting import require_matplotlib
        require_matplotlib("the curves of the training report")
    device = resolve_device(cfg.device)
    dinfo = D.setup(device)
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
        torch.cuda.set_device(device)
    say = log if dinfo.is_main else (lambda s: None)
    out = check_writable(cfg.out_dir) if dinfo.is_main else Path(cfg.out_dir)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    d = cfg.data
    data, t_data = open_source(cfg, device)  # [data source] in-memory tensors or a streamed Dataset

    name, kwargs = model_kwargs_for(cfg, data.input_shape, data.num_classes)
    from stbin.training.model_args import check_fits_data
    check_fits_data(cfg.model, data.input_shape, data.num_classes, d.name)
    torch.manual_seed(cfg.seed)  # same initial weights in every process
    try:
        model = build_model(name, **kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: {e}") from None
    check_fits_data(cfg.model, data.input_shape, data.num_classes, d.name, model, torch.zeros((2, *data.input_shape)))
    if cfg.init_from and resume is None:
        n_init = init_weights(model, cfg.init_from, warn=lambda m: say(f"warning: {m}"))
        say(f"initial weights: {n_init} tensors from {cfg.init_from}")
    model.to(device)
    opt, companion = build_optimizer(model, cfg)
    from stbin.optim import Bop
    bop = companion if isinstance(companion, Bop) else None
    n_train = data.n_train
    steps_per_epoch = math.ceil(n_train / cfg.train.batch_size)
    if n_train % cfg.train.batch_size and n_train % cfg.train.batch_size < 2 * dinfo.world_size:
        steps_per_epoch -= 1  # a last batch too small for batch norm (< 2 per process) is skipped
    if steps_per_epoch < 1:
        raise ValueError(f"{n_train} training images are too few for batch size {cfg.train.batch_size}")
    from stbin.training.schedules import build_scheduler
    s = cfg.schedule
    sched = build_scheduler(opt, s.name, cfg.train.epochs, steps_per_epoch, s.warmup_epochs, s.min_lr,
                            s.step_size, s.gamma)
    g_data = torch.Generator().manual_seed(cfg.seed)
    g_aug = torch.Generator(device=device).manual_seed(cfg.seed + 1000 + dinfo.rank)
    gens = {"data": g_data, "augment": g_aug}
    torch.manual_seed(cfg.seed + dinfo.rank)  # unit / weight noise: different in each process

    start_epoch, step, history = 0, 0, []
    if resume is not None:
        check_same_model(resume, name, kwargs)
        check_training_state(resume, bop=bop is not None)
        if resume["epoch"] > cfg.train.epochs:
            raise ValueError(f"train.epochs = {cfg.train.epochs} is below the epoch of the checkpoint to resume "
                             f"({resume['epoch']}, {resume.get('_path', 'checkpoint')}); give --epochs >= "
                             f"{resume['epoch']}")
        start_epoch, step, history = restore_training_state(resume, model, opt, bop, sched, gens)
        if "rng_state" in resume:
            if dinfo.enabled:
                torch.manual_seed(cfg.seed + dinfo.rank + 7919 * start_epoch)
        say(f"resuming from {resume.get('_path', 'checkpoint')} after epoch {start_epoch}")

    if dinfo.enabled and cfg.train.sync_batchnorm:  # [sync BN] statistics of the global batch
        from stbin.training.sync_batchnorm import convert_sync_batchnorm
        model = convert_sync_batchnorm(model)
    net: nn.Module = model
    if dinfo.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = bool(cfg.train.amp) and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    eval_split = data.eval_split

    say(f"stbin train: {cfg.preset or 'custom'} — model {name} on {d.name} ({n_train} training images, "
        f"{data.n_test} test), {plural(cfg.train.epochs, 'epoch')}, batch {cfg.train.batch_size}, device {device}"
        + (f", {dinfo.world_size} processes" if dinfo.enabled else "") + f" (data loaded in {t_data:.1f} s)")
    show = progress if progress is not None else cfg.train.progress
    from stbin.training.loggers import open_diagnostics  # [loggers] TensorBoard / user trackers
    diag = open_diagnostics(cfg, out, model, [opt, companion], loggers, dinfo.is_main)
    last_ckpt: Path | None = None
    for epoch in range(start_epoch + 1, cfg.train.epochs + 1):
        net.train()
        t_ep = time.perf_counter()
        batches = data.train_batches(epoch, cfg.train.batch_size, steps_per_epoch, g_data, g_aug, dinfo)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.train.epochs}", leave=False,
                   disable=(None if show is None else not show) if dinfo.is_main else True, file=sys.stderr)
        loss_sum, correct, seen = 0.0, 0, 0
        for xb, yb, n_global in bar:  # [data source] prepared batch, labels, global batch size
            with autocast():
                logits = net(xb)
            losses = F.cross_entropy(logits.float(), yb, reduction="none")
            batch_loss = float(losses.detach().sum())
            finite = math.isfinite(batch_loss)
            if dinfo.enabled:  # every process stops at the same step
                flag = torch.tensor([0.0 if finite else 1.0], device=device)
                torch.distributed.all_reduce(flag)
                finite = float(flag) == 0.0
            if not finite:
                raise _diverged(epoch, step + 1, f"the training loss is {batch_loss}", cfg)
            # sum over this share / global batch size x world: DDP's average is the global mean
            loss = losses.sum() * (dinfo.world_size / n_global)
            opt.zero_grad(set_to_none=True)
            if bop is not None:
                bop.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bop is not None:
                bop.step()
            sched.step()
            step += 1
            if diag is not None:
                diag.step(step, batch_loss / max(1, losses.numel()))
            loss_sum += batch_loss
            correct += int((logits.detach().argmax(-1) == yb).sum())
            seen += len(yb)
            if dinfo.is_main and seen:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        train_time = time.perf_counter() - t_ep
        if dinfo.enabled:  # the epoch's training loss / accuracy over all processes
            tot = torch.tensor([loss_sum, float(correct), float(seen)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(tot)
            loss_sum, correct, seen = float(tot[0]), int(tot[1]), int(tot[2])
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise _diverged(epoch, step, f"parameter {bad[0]} holds non-finite values", cfg)
        ev = evaluate_source(model, data, eval_split, "mode", cfg.train.eval_batch_size)
        if not math.isfinite(ev["loss"]):
            raise _diverged(epoch, step, f"the {eval_split} loss is {ev['loss']}", cfg)
        rec = {"epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"],
               "train_loss": loss_sum / max(1, seen), "train_accuracy": 100.0 * correct / max(1, seen),
               f"{eval_split}_loss": ev["loss"], f"{eval_split}_accuracy": ev["accuracy"],
               "epoch_time_s": train_time, "images_per_s": n_train / train_time if train_time > 0 else 0.0}
        if cfg.log.gradient_quality_every and epoch % cfg.log.gradient_quality_every == 0 and dinfo.is_main:
            from stbin.training.gradient_quality import log_gradient_quality
            rec.update(log_gradient_quality(model, data, max_samples=cfg.log.gradient_quality_samples))
        if diag is not None:
            diag.epoch(epoch, step, rec, eval_split, cfg.eval.modes,
                       lambda m: evaluate_source(model, data, eval_split, m, cfg.train.eval_batch_size))
        skipped = sorted(set(getattr(data, "skipped", ())))  # [data source] unreadable files (skip_corrupt)
        if skipped:
            rec["skipped_images"] = len(skipped)
            say(f"skipped {len(skipped)} unreadable image file(s) so far (first: {skipped[0]})")
        history.append(rec)
        say(f"epoch {epoch}/{cfg.train.epochs}: train loss {rec['train_loss']:.4f}, "
            f"{eval_split} accuracy (mode) {ev['accuracy']:.2f}%, {train_time:.1f} s")
        if dinfo.is_main:
            from stbin.training.metrics_log import write_metrics
            last_ckpt = save_checkpoint(checkpoint_path(out, epoch), {
                "model": {"name": name, "kwargs": kwargs, "input_shape": list(data.input_shape)},  # [data source]
                "model_state": model.state_dict(),
                "optimizer_state": opt.state_dict(), "scheduler_state": sched.state_dict(),
                "rng_state": rng_state(gens), "epoch": epoch, "step": step, "config": cfg.to_dict(),
                "metrics": history, **({"bop_state": bop.state_dict()} if bop is not None else {})})
            write_metrics(out, history)
            for old in find_checkpoints(out)[cfg.train.keep_checkpoints:]:
                old.unlink(missing_ok=True)
            _test_kill_point(epoch)
        D.barrier(dinfo)
    if last_ckpt is None and dinfo.is_main:
        cands = find_checkpoints(out)
        last_ckpt = cands[0] if cands else None

    results: dict[str, Any] = {"test": {}, "history": history, "out_dir": str(out),
                               "checkpoint": str(last_ckpt) if last_ckpt else None, "model": model}
    if dinfo.is_main:
        bs = cfg.train.eval_batch_size
        for m in cfg.eval.modes:
            results["test"][m] = evaluate_source(model, data, "test", m, bs)["accuracy"]
        if cfg.eval.ensemble:
            results["test"]["ensemble"] = evaluate_source(model, data, "test", "sample", bs,
                                                          samples=cfg.eval.ensemble)["accuracy"]
        results["time_s"] = time.perf_counter() - t_start
        results["data_time_s"] = t_data
        from stbin.training.report import write_report
        results["report"] = str(write_report(out, cfg, name, kwargs, model, data.input_shape, results, plots=plots))
        if diag is not None:
            diag.finish(step, results)
    D.barrier(dinfo)
    D.teardown(dinfo)
    return results
