"""``stbin summary``: a per-layer table of a model (Larq-style): parameters and memory by
precision, float32-equivalent size, compression ratio, MACs by precision.

Examples::

    stbin summary --model mlp                     # default arguments, MNIST-shaped input
    stbin summary --preset sbn_mnist              # the model of a training preset
    stbin summary --checkpoint runs/sbn_mnist/checkpoint-epoch0004.pt
    stbin summary --model resnet20 --input-shape 3,32,32 --set model.weights=sign
"""

from __future__ import annotations

import argparse
import sys

from stbin.cli.shapes import check_input_shape, parse_shape, recorded_shape


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("summary", help="per-layer parameters, memory and MACs by precision of a model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="registered model name, or a plugin 'package.module:factory'")
    p.add_argument("--preset", help="take the model (and input shape) of a training preset")
    p.add_argument("--checkpoint", metavar="PATH", help="summarise the model stored in a checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a model argument as in stbin train, e.g. model.hidden=[256,256] or model.weights=sign "
                        "(repeatable; the old form hidden=[256,256] still works but is deprecated)")
    p.add_argument("--input-shape", help="C,H,W of one input (default: from the preset's dataset, else 1,28,28)")
    return p


INPUT_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8),
                "synthetic": (1, 8, 8)}


def run(args: argparse.Namespace) -> int:
    from stbin.models import MODELS, build_model
    from stbin.training.config import parse_override
    from stbin.training.summary import format_summary, model_summary

    given = [x for x in (args.model, args.preset, args.checkpoint) if x]
    if len(given) != 1:
        raise ValueError("give exactly one of --model, --preset or --checkpoint")
    extra: dict = {}
    deprecated = []
    for item in args.overrides:  # the keys of stbin train: model.KEY=VALUE
        key = item.split("=", 1)[0].strip()
        if "=" in item and "." not in key:  # the old short form KEY=VALUE (noted once the model is built)
            deprecated.append(key)
            item = "model." + item.strip()
        parsed = parse_override(item)
        if list(parsed) != ["model"]:
            raise ValueError(f"--set {item!r}: stbin summary takes model arguments only (model.KEY=VALUE), "
                             f"not {key!r}")
        extra.update(parsed["model"])
    if args.checkpoint and extra:
        raise ValueError("--set does not apply to --checkpoint: the checkpoint fixes the model's arguments")
    shape = parse_shape(args.input_shape) if args.input_shape else None
    if args.checkpoint:
        from stbin.training import load_checkpoint, load_model

        ckpt = load_checkpoint(args.checkpoint)
        model, name = load_model(ckpt), ckpt["model"]["name"]
        kw = dict(ckpt["model"].get("kwargs", {}))
        # the data's shape, if recorded
        recorded = recorded_shape(ckpt["model"].get("input_shape", kw.get("input_shape")), args.checkpoint)
        shape = shape or recorded
        if shape is None:
            ds = (ckpt.get("config") or {}).get("data", {}).get("name")
            shape = INPUT_SHAPES.get(ds) or (kw.get("in_channels", 1), kw.get("image_size", 28), kw.get("image_size", 28))
    else:
        if args.preset:
            from stbin.training.presets import get_preset
            from stbin.training.trainer import model_kwargs_for

            cfg = get_preset(args.preset)
            cfg.model.update(extra)
            shape = shape or INPUT_SHAPES.get(cfg.data.name, (1, 28, 28))
            name, kw = model_kwargs_for(cfg, shape, 10)
        else:
            name = args.model
            from stbin.plugins import is_plugin
            if not is_plugin(name):
                MODELS.get(name)
            shape = shape or (1, 28, 28)
            from stbin.training.config import Config
            from stbin.training.trainer import model_kwargs_for

            name, kw = model_kwargs_for(Config(model={"name": name, **extra}), shape, 10)
        try:
            model = build_model(name, **kw)
        except TypeError as e:
            raise ValueError(f"model {name!r}: {e}") from None
        except (MemoryError, RuntimeError) as e:  # e.g. a huge --input-shape for an MLP
            reason = " ".join(str(e).split()) or type(e).__name__
            raise ValueError(f"model {name!r} cannot be built for inputs {'x'.join(map(str, shape))}: "
                             f"{reason[:200]}") from None
    check_input_shape(model, shape, f"--input-shape {args.input_shape}" if args.input_shape else
                      f"the input shape {','.join(map(str, shape))}")
    for key in deprecated:
        print(f"stbin summary: warning: --set {key}=... is deprecated; write --set model.{key}=... "
              "(the key of stbin train)", file=sys.stderr)
    print(format_summary(model_summary(model.eval(), shape), title=f"{name} on {'x'.join(map(str, shape))} inputs"),
          end="")
    return 0
