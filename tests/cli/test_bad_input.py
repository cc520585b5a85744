"""A corpus of bad inputs across every command and the public Python API.

Each CLI case must end with exit code 2 and exactly one line on stderr (``stbin CMD: error:
...``, no traceback) that names the offending key, file or value; each API case must raise
the stated exception type with such a message. After every case, no file of the shared
fixtures (a trained run, crafted files) has changed and the case's output folder holds no
checkpoint, deploy file or temporary file. Cases that need no training share one tiny
trained run (module-scoped) and the crafted files made from it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from stbin.training import load_checkpoint

TINY = ["--preset", "tiny", "--no-progress", "--set", "data.options={n_train=64, n_test=32}", "--out", "{out}"]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".stbin-lock"}


@dataclass
class Case:
    id: str
    argv: list[str]
    needles: list[str]
    missing: str | None = None          # simulate this optional module as not installed
    pre: Callable[[dict[str, Path], Path], Callable[[], None]] | None = None
    marks: list[Any] = field(default_factory=list)


def _lock(w, out):
    from stbin.training.lock import acquire, release

    fd = acquire(out)
    return lambda: release(out, fd)


def C(id, argv, *needles, **kw):
    return Case(id, argv, list(needles), **kw)


CLI_CASES = [
    # train: values
    C("threads", ["train", *TINY, "--set", "train.threads=-1"], "train.threads", "-1"),
    C("lr-huge", ["train", *TINY, "--set", "optim.lr=1e308"], "optim.lr", "1e+308"),
    C("lr-inf", ["train", *TINY, "--set", "optim.lr=inf"], "optim.lr", "inf"),
    C("lr-nan", ["train", *TINY, "--set", "optim.lr=nan"], "optim.lr", "nan"),
    C("lr-flag-zero", ["train", *TINY, "--lr", "0"], "optim.lr", "0"),
    C("betas-one", ["train", *TINY, "--set", "optim.betas=[0.9]"], "optim.betas", "0.9"),
    C("modes-string", ["train", *TINY, "--set", "eval.modes=mode"], "eval.modes", "'mode'"),
    C("hidden-negative", ["train", *TINY, "--set", "model.hidden=-5"], "model.hidden", "-5"),
    C("hidden-zero-width", ["train", *TINY, "--set", "model.hidden=[8,0]"], "model.hidden", "[8, 0]"),
    C("train-limit", ["train", *TINY, "--set", "data.train_limit=-1"], "data.train_limit", "-1"),
    C("test-limit", ["train", *TINY, "--set", "data.test_limit=0"], "data.test_limit", "0"),
    C("batch-size", ["train", *TINY, "--batch-size", "0"], "train.batch_size", "0"),
    C("epochs-negative", ["train", *TINY, "--epochs", "-1"], "train.epochs", "-1"),
    C("epochs-float", ["train", *TINY, "--set", "train.epochs=2.5"], "train.epochs", "2.5"),
    C("seed", ["train", *TINY, "--seed", "-3"], "seed", "-3"),
    C("device", ["train", *TINY, "--device", "gpu"], "device", "'gpu'"),
    C("num-classes", ["train", *TINY, "--set", "model.num_classes=1"], "model.num_classes = 1", "10"),
    C("in-features", ["train", *TINY, "--set", "model.in_features=100"], "model.in_features = 100", "64"),
    C("weight-scale-huge", ["train", *TINY, "--set", "model.weight_scale=1e308"], "model.weight_scale", "1e+308"),
    C("model-too-deep-for-images", ["train", *TINY, "--model", "lenet5"], "lenet5", "12x12", "8"),
    C("preset-label", ["train", *TINY, "--set", 'preset="nope"'], "preset", "'nope'"),
    C("epochs-not-int", ["train", *TINY, "--epochs", "abc"], "--epochs", "'abc'"),
    C("unknown-option", ["train", *TINY, "--bogus"], "--bogus"),
    C("model-arg-unknown", ["train", *TINY, "--set", "model.width=0"], "'width'"),
    C("bits", ["train", *TINY, "--set", "model.bits=0"], "model.bits", "0"),
    C("activation", ["train", *TINY, "--set", 'model.activation="stochastc"'], "stochastc"),
    C("gamma", ["train", *TINY, "--set", "schedule.gamma=2"], "schedule.gamma", "2"),
    C("momentum", ["train", *TINY, "--set", "optim.momentum=1.5"], "optim.momentum", "1.5"),
    C("min-lr", ["train", *TINY, "--set", "schedule.min_lr=1"], "schedule.min_lr", "1"),
    C("val-size", ["train", *TINY, "--set", "data.val_size=100000"], "val_size", "100000"),
    C("data-option", ["train", *TINY, "--set", "data.options={n_trian=5}"], "n_trian"),
    C("amp-int", ["train", *TINY, "--set", "train.amp=3"], "train.amp", "3"),
    C("override-form", ["train", *TINY, "--set", "novalue"], "novalue"),
    C("override-depth", ["train", *TINY, "--set", "a.b.c=1"], "a.b.c"),
    C("unknown-key", ["train", *TINY, "--set", "optim.lrr=0.1"], "optim.lrr", "optim.lr"),
    C("preset", ["train", "--preset", "sbn_mnst", "--out", "{out}"], "sbn_mnst"),
    # train: files
    C("config-latin1", ["train", "--config", "{latin1_toml}", "--out", "{out}"], "latin1.toml", "UTF-8"),
    C("config-toml", ["train", "--config", "{bad_toml}", "--out", "{out}"], "bad.toml", "invalid TOML"),
    C("config-missing", ["train", "--config", "{root}/nope.toml", "--out", "{out}"], "nope.toml"),
    C("config-unknown-key", ["train", "--config", "{unknown_toml}", "--out", "{out}"], "optim.lrr"),
    C("config-string-list", ["train", "--config", "{strlist_toml}", "--out", "{out}"], "eval.modes", "'mode'"),
    C("cifar-garbage", ["train", *TINY, "--dataset", "cifar10", "--data-root", "{cifar_garbage}"],
      "cifar_garbage/", "not a readable data pickle"),
    C("cifar-malicious", ["train", *TINY, "--dataset", "cifar10", "--data-root", "{cifar_evil}"],
      "cifar_evil/", "refusing to load posix.system"),
    C("cifar-shape", ["train", *TINY, "--dataset", "cifar10", "--data-root", "{cifar_shape}"],
      "cifar_shape/", "not CIFAR-10 shaped"),
    C("cifar-missing", ["train", *TINY, "--dataset", "cifar10", "--data-root", "{empty}"], "CIFAR-10 not found"),
    C("init-from-truncated", ["train", *TINY, "--set", 'init_from="{truncated}"'], "truncated.pt"),
    C("init-from-bitflip", ["train", *TINY, "--set", 'init_from="{bitflip}"'], "bitflip.pt", "damaged"),
    C("init-from-missing", ["train", *TINY, "--set", 'init_from="{root}/none.pt"'], "none.pt"),
    C("out-under-a-file", ["train", *TINY[:-2], "--out", "{afile}/run"], "cannot write", "afile"),
    C("folder-in-use", ["train", *TINY], "in use by another stbin run", f"PID {os.getpid()}", pre=_lock),
    # train: resume
    C("resume-preset", ["train", "--resume", "{run}", "--preset", "tiny"], "--preset"),
    C("resume-config", ["train", "--resume", "{run}", "--config", "{good_toml}"], "--config"),
    C("resume-lr", ["train", "--resume", "{run}", "--lr", "0.1"], "optim.lr cannot be changed"),
    C("resume-model", ["train", "--resume", "{run}", "--set", "model.hidden=[4]"], "model.hidden cannot be changed"),
    C("resume-epochs-below", ["train", "--resume", "{run}", "--epochs", "1", "--no-progress"], "train.epochs = 1",
      "epoch of the checkpoint"),
    C("resume-other-out", ["train", "--resume", "{run}", "--out", "{out}"], "--out", "differs"),
    C("resume-truncated", ["train", "--resume", "{truncated}"], "truncated.pt"),
    C("resume-bitflip", ["train", "--resume", "{bitflip}"], "bitflip.pt", "damaged"),
    C("resume-v99", ["train", "--resume", "{v99}"], "v99.pt", "version 99"),
    C("resume-foreign", ["train", "--resume", "{foreign}"], "foreign.pt", "not an stbin checkpoint"),
    C("resume-malicious", ["train", "--resume", "{malicious}"], "malicious.pt", "not a readable stbin checkpoint"),
    C("resume-garbage", ["train", "--resume", "{garbage}"], "garbage.pt"),
    C("resume-empty", ["train", "--resume", "{empty}"], "no complete checkpoint", "empty"),
    C("resume-no-config", ["train", "--resume", "{noconfig}"], "noconfig.pt", "no training configuration"),
    C("resume-missing", ["train", "--resume", "{root}/nothing"], "nothing"),
    # summary
    C("summary-bitflip", ["summary", "--checkpoint", "{bitflip}"], "bitflip.pt", "damaged"),
    C("summary-truncated", ["summary", "--checkpoint", "{truncated}"], "truncated.pt"),
    C("summary-malicious", ["summary", "--checkpoint", "{malicious}"], "malicious.pt"),
    C("summary-v99", ["summary", "--checkpoint", "{v99}"], "version 99"),
    C("summary-hidden", ["summary", "--model", "mlp", "--set", "hidden=-5"], "model.hidden", "-5"),
    C("summary-width", ["summary", "--model", "lenet5", "--set", "width=0"], "model.width", "0"),
    C("summary-shape", ["summary", "--model", "mlp", "--input-shape", "0,1"], "--input-shape", "0,1"),
    C("summary-preset", ["summary", "--preset", "nope"], "nope"),
    C("summary-none", ["summary"], "exactly one of"),
    # export
    C("export-bitflip", ["export", "{bitflip}", "{out}/m.stbn"], "bitflip.pt", "damaged"),
    C("export-truncated", ["export", "{truncated}", "{out}/m.stbn"], "truncated.pt"),
    C("export-malicious", ["export", "{malicious}", "{out}/m.stbn"], "malicious.pt"),
    C("export-v99", ["export", "{v99}", "{out}/m.stbn"], "version 99"),
    C("export-foreign", ["export", "{foreign}", "{out}/m.stbn"], "not an stbin checkpoint"),
    C("export-shape-misfit", ["export", "{ck}", "{out}/m.stbn", "--input-shape", "3,32,32"], "--input-shape 3,32,32",
      "does not fit"),
    C("export-shape-text", ["export", "{ck}", "{out}/m.stbn", "--input-shape", "1,x"], "--input-shape", "1,x"),
    C("export-verify-samples", ["export", "{ck}", "{out}/m.stbn", "--verify-samples", "0"], "--verify-samples"),
    C("export-dir", ["export", "{ck}", "{root}"], "is a directory"),
    C("export-no-numba", ["export", "{ck}", "{out}/m.stbn", "--verify"], "numba", "pip install 'stbin[deploy]'",
      missing="numba"),
    # bench-inference
    C("bench-repeats", ["bench-inference", "--repeats", "0"], "--repeats", "0"),
    C("bench-hidden", ["bench-inference", "--hidden", "-1"], "--hidden", "-1"),
    C("bench-no-numba", ["bench-inference", "--repeats", "1"], "numba", "pip install 'stbin[deploy]'",
      missing="numba"),
    C("bench-bitflip", ["bench-inference", "{bitflip}", "--repeats", "1", "--skip-linear"], "bitflip.pt", "damaged"),
    # estimators
    C("estimators-threads", ["estimator-lab", "--out", "{out}/lab", "--threads", "0"], "--threads", "0"),
    C("estimators-method", ["estimator-lab", "--out", "{out}/lab", "--methods", "st,foo"], "'foo'"),
    C("estimators-epochs", ["estimators", "--out", "{out}/lab", "--epochs", "1,x"], "--epochs"),
    C("estimators-no-matplotlib", ["estimators", "--quick", "--out", "{out}/lab"], "matplotlib",
      "pip install 'stbin[reports]'", missing="matplotlib"),
    # gradient-quality
    C("gq-missing", ["gradient-quality", "{out}/nothing-here"], "nothing-here"),
    C("gq-bitflip", ["gradient-quality", "{bitflip}", "--out", "{out}/gq"], "bitflip.pt", "damaged"),
    C("gq-tolerance", ["gradient-quality", "{ck}", "--out", "{out}/gq", "--tolerance", "0"], "--tolerance", "0"),
    C("gq-method", ["gradient-quality", "{ck}", "--out", "{out}/gq", "--methods", "st,foo"], "'foo'"),
    C("gq-reference", ["gradient-quality", "{ck}", "--out", "{out}/gq", "--reference", "exactly"], "'exactly'"),
    C("gq-no-matplotlib", ["gradient-quality", "{ck}", "--out", "{out}/gq"], "matplotlib",
      "pip install 'stbin[reports]'", "--no-plot", missing="matplotlib"),
    # theory
    C("theory-m", ["theory", "--quick", "--out", "{out}/t", "--m", "1"], "--m", "1"),
    C("theory-lr", ["theory", "--quick", "--out", "{out}/t", "--lr", "-0.5"], "--lr", "-0.5"),
    C("theory-no-matplotlib", ["theory", "--quick", "--out", "{out}/t"], "matplotlib", "pip install 'stbin[reports]'",
      missing="matplotlib"),
    # reproduce
    C("reproduce-name", ["reproduce", "sbn-studdy", "--out", "{out}"], "sbn-studdy", "sbn-study"),
    C("reproduce-jobs", ["reproduce", "sbn-study", "--quick", "--jobs", "0", "--out", "{out}"], "--jobs"),
    C("reproduce-no-matplotlib", ["reproduce", "sbn-study", "--quick", "--out", "{out}"], "matplotlib",
      missing="matplotlib"),
]


def _fmt(s: str, w: dict[str, Path], out: Path) -> str:
    """Fill ``{name}`` with the fixture paths (TOML tables such as ``{n_train=64}`` are left alone)."""
    paths = {**w, "out": out}
    return re.sub(r"\{(\w+)\}", lambda m: str(paths[m.group(1)]) if m.group(1) in paths else m.group(0), s)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input(case, world, tmp_path, monkeypatch, run_cli, assert_user_error):
    out = tmp_path / "out"
    argv = [_fmt(a, world, out) for a in case.argv]
    needles = [_fmt(n, world, out) for n in case.needles]
    if case.missing:
        monkeypatch.setitem(sys.modules, case.missing, None)
    before = _snapshot(world["root"])
    cleanup = case.pre(world, out) if case.pre else None
    try:
        r = run_cli(*argv, inprocess=True)
    finally:
        if cleanup:
            cleanup()
    assert_user_error(r, *needles, command=argv[0])
    assert _snapshot(world["root"]) == before, "a file of the fixtures changed"
    if out.exists():
        left = [p.name for p in out.rglob("*") if p.suffix in (".pt", ".stbn", ".tmp", ".csv", ".md")]
        assert not left, left
    if case.missing:  # checked before any work: the output folder is not even created
        assert not any(out.rglob("*.png")) and not (out / "lab").exists() and not (out / "t").exists()


def test_a_missing_extra_in_a_new_interpreter(tmp_path, world, run_cli, assert_user_error):
    """The same check with the module really absent from a fresh process (sitecustomize hides it)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = run_cli("estimators", "--quick", "--out", str(tmp_path / "lab"), env=env)
    assert_user_error(r, "matplotlib", "pip install 'stbin[reports]'")
    assert not (tmp_path / "lab").exists()


# ---- the public Python API -------------------------------------------------------------------

def _api_cases():
    from stbin.training.checkpoint import CheckpointError
    from stbin.training.validation import ConfigError

    def cfg(*ov):
        from stbin.training.config import build_config
        return build_config("tiny", overrides=list(ov))

    def train_bad_threads(w, out):
        from stbin.training.presets import get_preset
        from stbin.training.trainer import train
        c = get_preset("tiny")
        c.out_dir, c.train.threads = str(out), -1
        train(c, log=lambda s: None)

    def resume_below(w, out):
        from stbin.training.config import from_dict
        from stbin.training.trainer import latest_checkpoint, train
        ck = latest_checkpoint(w["run"])
        c = from_dict(ck["config"])
        c.out_dir, c.train.epochs = str(out), 1
        train(c, resume=ck, log=lambda s: None)

    def init_bitflip(w, out):
        from stbin.models import build_model
        from stbin.training.trainer import init_weights
        init_weights(build_model("mlp", in_features=64, hidden=[128, 128], num_classes=10), w["bitflip"])

    def deploy_load(name):
        def f(w, out):
            from stbin.deploy import load
            load(w[name])
        return f

    def export_api(w, out):
        from stbin.deploy import export_checkpoint
        export_checkpoint(w["bitflip"], out / "m.stbn")

    def load_model_api(name):
        def f(w, out):
            from stbin.training import load_model
            load_model(w[name])
        return f

    def load_ck(name):
        return lambda w, out: load_checkpoint(w[name])

    def cifar(name):
        def f(w, out):
            from stbin.data import load_dataset
            load_dataset("cifar10", root=str(w[name]))
        return f

    def synthetic_option(w, out):
        from stbin.data import load_dataset
        load_dataset("synthetic", n_trian=5)

    from stbin.deploy import DeployFormatError
    return [
        ("load-truncated", load_ck("truncated"), CheckpointError, ["truncated.pt"]),
        ("load-bitflip", load_ck("bitflip"), CheckpointError, ["bitflip.pt", "damaged"]),
        ("load-malicious", load_ck("malicious"), CheckpointError, ["malicious.pt"]),
        ("load-garbage", load_ck("garbage"), CheckpointError, ["garbage.pt"]),
        ("load-v99", load_ck("v99"), CheckpointError, ["version 99"]),
        ("load-model-bitflip", load_model_api("bitflip"), CheckpointError, ["damaged"]),
        ("load-model-foreign", load_model_api("foreign"), CheckpointError, ["foreign.pt"]),
        ("config-lr", lambda w, o: cfg("optim.lr=inf"), ConfigError, ["optim.lr", "inf"]),
        ("config-betas", lambda w, o: cfg("optim.betas=[0.9]"), ConfigError, ["optim.betas"]),
        ("config-modes", lambda w, o: cfg("eval.modes=mode"), ConfigError, ["eval.modes", "'mode'"]),
        ("train-threads", train_bad_threads, ConfigError, ["train.threads", "-1"]),
        ("train-resume-below", resume_below, ValueError, ["train.epochs = 1"]),
        ("init-from-bitflip", init_bitflip, CheckpointError, ["damaged"]),
        ("export-bitflip", export_api, CheckpointError, ["bitflip.pt", "damaged"]),
        ("deploy-truncated", deploy_load("truncated_stbn"), DeployFormatError, ["truncated.stbn", "truncated"]),
        ("deploy-bitflip", deploy_load("bitflip_stbn"), DeployFormatError, ["bitflip.stbn", "checksum"]),
        ("deploy-version", deploy_load("v9_stbn"), DeployFormatError, ["v9.stbn", "version 9"]),
        ("deploy-pickle", deploy_load("pickle_stbn"), DeployFormatError, ["pickle.stbn", "bad magic"]),
        ("deploy-widths", deploy_load("widths_stbn"), ValueError, ["widths.stbn", "in_features"]),
        ("cifar-garbage", cifar("cifar_garbage"), ValueError, ["cifar_garbage/", "not a readable data pickle"]),
        ("cifar-malicious", cifar("cifar_evil"), pickle.UnpicklingError, ["refusing to load posix.system"]),
        ("synthetic-option", synthetic_option, ValueError, ["n_trian"]),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("id, call, exc, needles", API_CASES,
                         ids=[c.values[0] if hasattr(c, "marks") else c[0] for c in API_CASES])
def test_api_bad_input(id, call, exc, needles, world, tmp_path):
    before = _snapshot(world["root"])
    with pytest.raises(exc) as e:
        call(world, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg.strip(), msg
    for n in needles:
        assert n in msg, (n, msg)
    assert _snapshot(world["root"]) == before
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".stbn", ".tmp")]


def test_the_corpus_is_large_and_covers_every_command():
    from stbin.cli.main import COMMANDS

    assert len(CLI_CASES) + len(API_CASES) >= 60
    aliases = {"estimators": "estimator-lab"}  # the old name of the lab's command still works
    assert {aliases.get(c.argv[0], c.argv[0]) for c in CLI_CASES} == set(COMMANDS)
    assert not Path("/tmp/stbin-owned").exists()  # no malicious pickle ran
