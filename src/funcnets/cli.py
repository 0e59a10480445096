"""The ``funcnets`` command: ``demo``, ``train``, ``parity`` and ``bench``.

Expected failures (bad options, shapes, files, directories) print one paragraph that
says what was expected, what was given and the fix, and exit with status 1 (2 for
usage errors, as argparse does); tracebacks are kept for real bugs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from funcnets.errors import FuncnetsError

from funcnets.recipes import MODELS


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.999, got {text!r}") from None
    return b1, b2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funcnets", description="PyTorch's training story as pure JAX functions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,train,parity,bench}")

    demo = sub.add_parser("demo", help="the tutorial end to end on real bundled data (~1 minute)")
    demo.add_argument("--out", default="runs/demo", help="output directory for plots and weights (default: runs/demo)")
    demo.add_argument("--no-parity", action="store_true", help="skip the PyTorch parity report")

    tr = sub.add_parser("train", help="train a model on the bundled digits or local MNIST files")
    tr.add_argument("--model", default="lenet", help=f"one of {', '.join(MODELS)} (default: lenet)")
    tr.add_argument("--data", default="digits", help="'digits' (bundled) or a directory of MNIST IDX files")
    tr.add_argument("--epochs", type=_positive(int), default=30)
    tr.add_argument("--batch-size", type=_positive(int), default=32)
    tr.add_argument("--optimizer", default="adamw", help="sgd, adam or adamw (default: adamw)")
    tr.add_argument("--lr", type=_positive(float), default=2e-3)
    tr.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    tr.add_argument("--nesterov", action="store_true")
    tr.add_argument("--weight-decay", type=float, default=1e-4)
    tr.add_argument("--betas", type=_betas, default=(0.9, 0.999), help="Adam betas, e.g. 0.9,0.999")
    tr.add_argument("--schedule", default="cosine", help="'cosine' (CosineAnnealingLR over all steps) or 'constant'")
    tr.add_argument("--augment-shift", type=int, default=2, help="random translation in pixels (0: none)")
    tr.add_argument("--trainable", nargs="+", help="train only these parameters (globs on torch names, e.g. 'fc.*')")
    tr.add_argument("--weights", help="initial weights: a torch .pth or .safetensors file")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--checkpoint-dir", help="save a checkpoint after every epoch here")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    tr.add_argument("--out", default="runs/train", help="output directory (plot, history, final weights)")
    tr.add_argument("--devices", default="1", help="'1' (default) or 'all': data-parallel over every local device")
    tr.add_argument("--no-progress", action="store_true")

    par = sub.add_parser("parity", help="compare against the installed PyTorch and print the differences")
    par.add_argument("--quick", action="store_true", help="skip the float64 ResNet-18 checks")
    par.add_argument("--json", help="also write the rows as JSON here")

    bench = sub.add_parser("bench", help="benchmark suite: funcnets vs PyTorch on the tutorial's workloads")
    bench.add_argument("--json", help="write the results as JSON here")
    bench.add_argument("--plot", help="write a PNG of the speed-up ratios here")
    bench.add_argument("--only", nargs="+", help="run only workloads whose name contains one of these")
    bench.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    bench.add_argument("--repeats", type=_positive(int), default=15)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from funcnets.config import enable_compilation_cache

        enable_compilation_cache()
        return {"demo": cmd_demo, "train": cmd_train, "parity": cmd_parity, "bench": cmd_bench}[args.command](args)
    except (FuncnetsError, FileNotFoundError, ValueError, TypeError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"funcnets {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last complete checkpoint (if any) is intact", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- train
def _load_data(spec: str, model_name: str):
    from funcnets import data

    size, channels = (32, 1) if model_name == "lenet" else (64, 3)
    if spec == "digits":
        return data.load_digits(size=size, channels=channels)
    path = Path(spec)
    if not path.is_dir():
        raise FuncnetsError(f"--data must be 'digits' or a directory of MNIST IDX files; {spec!r} is neither.")
    return data.load_mnist(path, size=size, channels=channels)


def cmd_train(args) -> int:
    from funcnets import optim, recipes, torch_io

    out = recipes.check_writable(args.out)
    if args.checkpoint_dir:
        recipes.check_writable(args.checkpoint_dir)
    if args.resume and not args.checkpoint_dir:
        raise FuncnetsError("--resume needs --checkpoint-dir (where the checkpoints are).")
    if args.devices not in ("1", "all"):
        raise FuncnetsError(f"--devices must be '1' or 'all', got {args.devices!r}.")
    split = _load_data(args.data, args.model)
    recipes.check_batch_size(args.batch_size, len(split.x_train))
    model, params, state = recipes.build_model(args.model, args.weights, args.seed)
    steps = args.epochs * (len(split.x_train) // args.batch_size)
    opt = recipes.make_optimizer(args.optimizer, args.lr, args.momentum, args.weight_decay, args.nesterov,
                                 args.betas, args.schedule, steps)
    trainable = optim.select(params, include=args.trainable) if args.trainable else None
    print(model.summary(params, state) if args.model == "lenet" else f"{args.model}: "
          f"{sum(a.size for a in model.parameters(params)):,} parameters")
    print(f"data: {len(split.x_train)} training / {len(split.x_test)} held-out images {split.x_train.shape[1:]}")
    t = time.perf_counter()
    ts, history = recipes.fit(
        model, params, state, split, opt, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        trainable=trainable, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
        progress=not args.no_progress, desc=args.model, augment_shift=args.augment_shift,
        devices=args.devices,
    )
    seconds = time.perf_counter() - t
    final = history[-1]
    print(f"held-out accuracy {final['test_accuracy']:.2%} after {final['epoch']} epochs ({seconds:.1f} s, compilation included)")
    torch_io.save_weights(out / f"{args.model}.safetensors", model, ts.params, ts.model_state)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    recipes.plot_history(history, out / "curves.png", title=f"{args.model} on {args.data}")
    print(f"wrote {out / (args.model + '.safetensors')} (loads in PyTorch), {out / 'curves.png'}, {out / 'history.json'}")
    return 0


# --------------------------------------------------------------------------- parity
def cmd_parity(args) -> int:
    from funcnets import parity

    rows = parity.run(quick=args.quick)
    print(parity.format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r._asdict() | {"ok": r.ok} for r in rows], indent=1))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks within tolerance")
    return 1 if failed else 0


# --------------------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    from funcnets import benchmark

    results = benchmark.run(only=args.only, torch_compile=not args.no_compile, repeats=args.repeats)
    print(benchmark.format_table(results))
    if args.json:
        benchmark.write_json(results, args.json)
    if args.plot:
        benchmark.plot(results, args.plot)
    return 0


# --------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from funcnets import demo

    return demo.run(Path(args.out), parity=not args.no_parity)


if __name__ == "__main__":
    raise SystemExit(main())
