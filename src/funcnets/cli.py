"""The ``funcnets`` command: ``demo``, ``train``, ``parity`` and ``bench``.

Exit status: 0 done (also a resume of a finished run, which trains nothing), 1 an
expected failure (bad options, shapes, files, directories, settings that do not fit the
checkpoint, a non-finite training loss), 2 a usage error (as argparse does), 130
interrupted by Ctrl-C. Expected failures print one paragraph that says what was expected,
what was given and the fix; tracebacks are kept for real bugs. Ctrl-C prints one line and
never tears a checkpoint (see :func:`funcnets._io.interrupt_guard`).

``train`` and its checkpoints: every checkpoint holds the run's settings. A fresh run
refuses a ``--checkpoint-dir`` that already holds checkpoints (``--resume`` continues
them, ``--overwrite`` deletes them first). ``--resume`` takes every setting it is not
given from the checkpoint and refuses given ones that differ, listing them, except
``--epochs``, which may grow: the run keeps its schedule for the epochs it was started
with and the added epochs get a new cosine cycle (:func:`funcnets.recipes.lr_schedule`);
step/multistep/exponential/plateau schedules continue, and a onecycle run refuses to
grow (:func:`funcnets.recipes.learning_rate`). ``--lr-schedule`` (also ``--schedule``)
and its options are settings of the run.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

from funcnets import folder_train
from funcnets.errors import FuncnetsError
from funcnets.recipes import MODELS

# the settings a run is made of: option dest -> default for a fresh run. On --resume an
# option not given takes the checkpoint's value instead of this default.
RUN_DEFAULTS = {
    "model": "lenet",
    "data": "digits",
    "epochs": 30,
    "batch_size": 32,
    "optimizer": "adamw",
    "lr": 2e-3,
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 1e-4,
    "betas": (0.9, 0.999),
    "schedule": "cosine",
    "augment_shift": 2,
    "trainable": None,
    "weights": None,
    "seed": 0,
}


def _number(kind, lo, hi, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse type: a finite ``kind`` in the range, which the message states."""
    span = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    what = "an integer" if kind is int else "a finite number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in {span}, got {text!r}") from None
        inside = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"expected {what} in {span}, got {text}")
        return value

    return parse


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1) like 0.9,0.999, got {text!r}") from None
    if not all(math.isfinite(b) and 0 <= b < 1 for b in (b1, b2)):
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1) like 0.9,0.999, got {text}")
    return b1, b2


def _resume(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funcnets", description="PyTorch's training story as pure JAX functions.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{demo,train,evaluate,predict,export,parity,bench,port,warmup}")

    demo = sub.add_parser("demo", help="the tutorial end to end on real bundled data (~1 minute)")
    demo.add_argument("--out", default="runs/demo", help="output directory for plots and weights (default: runs/demo)")
    demo.add_argument("--no-parity", action="store_true", help="skip the PyTorch parity report")

    d = RUN_DEFAULTS
    tr = sub.add_parser(
        "train", help="train a model on the bundled digits or local MNIST files",
        description="Train a classifier. With --resume, options not given come from the checkpoint.",
    )
    tr.add_argument("--model", help=f"{MODELS[0]} or any name of funcnets.models.list_models() (e.g. "
                    f"{', '.join(MODELS[1:])}, mobilenet_v3_small, vit_b_16; default: {d['model']}): the zoo "
                    "model's classifier head is replaced for the data's classes (fine-tune it alone with "
                    "--trainable, e.g. 'fc.*'); images: 64×64 RGB or the model's minimum size if larger")
    tr.add_argument("--data", help="'digits' (bundled, the default), a directory of MNIST IDX files, or your "
                    "images: an ImageFolder (photos/<class>/<image>) or a .csv/.json list of path,label "
                    "(see funcnets.folder_train)")
    tr.add_argument("--epochs", type=_number(int, 1, 100_000), help=f"1..100000 (default: {d['epochs']}); "
                    "with --resume a larger number extends the run (cosine: a new cycle for the added epochs; "
                    "step/multistep/exponential/plateau continue; onecycle cannot be extended)")
    tr.add_argument("--batch-size", type=_number(int, 1, 65_536), help=f"1..65536 (default: {d['batch_size']})")
    tr.add_argument("--optimizer", help=f"sgd, adam or adamw (default: {d['optimizer']})")
    tr.add_argument("--lr", type=_number(float, 0, 10, lo_open=True), help=f"in (0, 10] (default: {d['lr']:g})")
    tr.add_argument("--momentum", type=_number(float, 0, 1, hi_open=True), help="SGD momentum in [0, 1) (default: 0)")
    tr.add_argument("--nesterov", action="store_const", const=True, help="SGD with Nesterov momentum")
    tr.add_argument("--weight-decay", type=_number(float, 0, 1), help=f"in [0, 1] (default: {d['weight_decay']:g})")
    tr.add_argument("--betas", type=_betas, help="Adam betas, two numbers in [0, 1) (default: 0.9,0.999)")
    tr.add_argument("--lr-schedule", "--schedule", dest="schedule",
                    help="constant, cosine (CosineAnnealingLR over all steps, per batch; the default), onecycle "
                    "(OneCycleLR per batch, cycling momentum/betas[0]), step, multistep, exponential (per epoch) "
                    "or plateau (ReduceLROnPlateau on the held-out loss or accuracy)")
    tr.add_argument("--step-size", type=_number(int, 1, 100_000), help="step: epochs between decays")
    tr.add_argument("--gamma", type=_number(float, 0, 1, lo_open=True),
                    help="step/multistep/exponential: the decay factor, in (0, 1] (default 0.1; exponential: required)")
    tr.add_argument("--milestones", type=_number(int, 1, 100_000), nargs="+", help="multistep: the epochs to decay at")
    tr.add_argument("--max-lr", type=_number(float, 0, 10, lo_open=True), help="onecycle: the peak rate (default: --lr)")
    tr.add_argument("--pct-start", type=_number(float, 0, 1), help="onecycle: the fraction of steps rising (default 0.3)")
    tr.add_argument("--base-momentum", type=_number(float, 0, 1, hi_open=True),
                    help="onecycle: the momentum/betas[0] at the peak rate, in [0, 1) (default 0.85)")
    tr.add_argument("--max-momentum", type=_number(float, 0, 1, hi_open=True),
                    help="onecycle: the momentum/betas[0] at the start and end, in [0, 1) (default 0.95)")
    tr.add_argument("--div-factor", type=_number(float, 0, 1e12, lo_open=True),
                    help="onecycle: the first rate is max_lr/div_factor (default 25)")
    tr.add_argument("--final-div-factor", type=_number(float, 0, 1e12, lo_open=True),
                    help="onecycle: the last rate is max_lr/div_factor/final_div_factor (default 1e4)")
    tr.add_argument("--anneal-strategy", choices=("cos", "linear"), help="onecycle: the annealing (default cos)")
    tr.add_argument("--patience", type=_number(int, 0, 100_000), help="plateau: epochs without improvement (default 10)")
    tr.add_argument("--factor", type=_number(float, 0, 1, hi_open=True), help="plateau: the decay factor (default 0.1)")
    tr.add_argument("--plateau-metric", choices=("loss", "accuracy"), help="plateau: the held-out metric (default loss)")
    tr.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                    help="fp32 (default), or mixed precision with float32 master weights: bf16, or fp16 with "
                    "dynamic loss scaling (torch's autocast + GradScaler)")
    tr.add_argument("--augment-shift", type=_number(int, 0, 16),
                    help=f"random translation in pixels, 0..16 (0: none; default: {d['augment_shift']})")
    tr.add_argument("--trainable", nargs="+", help="train only these parameters (globs on torch names, e.g. 'fc.*')")
    tr.add_argument("--weights", help="initial weights: a torch .pth or .safetensors file")
    tr.add_argument("--seed", type=_number(int, 0, 2**32 - 1), help="0..4294967295 (default: 0)")
    tr.add_argument("--checkpoint-dir", help="save a checkpoint after every epoch here (keeps the 3 newest)")
    tr.add_argument("--resume", nargs="?", const=True, type=_resume, metavar="STEP|PATH",
                    help="continue the run in --checkpoint-dir: from its newest intact checkpoint, "
                    "from step STEP, or from the checkpoint folder PATH")
    tr.add_argument("--overwrite", action="store_true",
                    help="start afresh in a --checkpoint-dir that holds checkpoints, deleting them first")
    tr.add_argument("--out", default="runs/train", help="output directory (plot, history, final weights)")
    tr.add_argument("--devices", default="1", help="'1' (default) or 'all': data-parallel over every local device")
    tr.add_argument("--no-progress", action="store_true")
    folder_train.add_train_options(tr)  # --val-data, --val-fraction, --image-size, --workers: image files
    folder_train.add_parsers(sub)  # evaluate, predict, export

    par = sub.add_parser("parity", help="compare against the installed PyTorch and print the differences")
    par.add_argument("--quick", action="store_true", help="skip the float64 ResNet-18 checks")
    par.add_argument("--json", help="also write the rows as JSON here")
    par.add_argument("--locate", metavar="MODULE:CLASS", help="instead: find where a port of this torch module "
                     "(e.g. mypackage.models:Net or torchvision.models:resnet18, called with no arguments) "
                     "diverges, submodule by submodule; the port is from_torch's unless --model or --port")
    par.add_argument("--weights", help="--locate: a .pth/.safetensors state_dict for the torch module (strict)")
    par.add_argument("--input-shape", help="--locate: the input's shape, e.g. 1,3,32,32 (a seeded torch.rand)")
    par.add_argument("--input-dtype", default="float32", choices=("float32", "float64"),
                     help="--locate: float64 compares semantics to 1e-9 (default float32, 1e-4)")
    par.add_argument("--model", help="alone: float32 eval logits of this funcnets zoo model (any name of "
                     "funcnets.models.list_models()) against torchvision's on the same random weights; "
                     "with --locate: compare with this funcnets zoo model on the torch module's weights")
    par.add_argument("--port", metavar="FILE.py", help="--locate: compare with the model of a file `funcnets port` "
                     "wrote (its load()) on the torch module's weights")
    par.add_argument("--train", action="store_true", help="--locate: train mode (BatchNorm batch statistics)")
    par.add_argument("--rtol", type=float, help="--locate: relative tolerance (default 1e-4 float32, 1e-9 float64)")
    par.add_argument("--zoo", action="store_true", help="instead: --model's check for every model of "
                     "funcnets.models.list_models() (the biggest take minutes)")
    par.add_argument("--only", help="--zoo: only these models, comma-separated (e.g. resnet18,vgg11)")
    par.add_argument("--markdown", metavar="FILE", help="--model/--zoo: also write the table as markdown here")

    port = sub.add_parser("port", help="write a torch module as funcnets source (+ .safetensors weights)",
                          description="Trace a torch module, write it as one funcnets Python file with its weights "
                          "beside it, and compare the generated module's output with torch's.")
    port.add_argument("target", metavar="MODULE:CLASS", help="the torch module class, e.g. mypackage.models:Net "
                      "(instantiated with no arguments)")
    port.add_argument("--input-shape", required=True, help="the example input's shape, e.g. 1,3,224,224")
    port.add_argument("--input-dtype", default="float32", choices=("float32", "float64", "int64"),
                      help="the example input's dtype (int64: token ids in [0, 10)); default float32")
    port.add_argument("--out", required=True, help="the Python file to write, e.g. net_funcnets.py")
    port.add_argument("--weights", help="a .pth/.safetensors state_dict loaded into the module strictly first")
    port.add_argument("--leaf-module", action="append", default=[], metavar="PKG.MOD:TorchClass=PKG.MOD:factory",
                      help="build submodules of TorchClass with factory (a funcnets Module from the submodule's "
                      "hyperparameters) instead of tracing them, e.g. for data-dependent control flow; repeatable")
    bench = sub.add_parser("bench", help="benchmark suite: funcnets vs PyTorch on the tutorial's workloads")
    bench.add_argument("--json", help="write the results as JSON here")
    bench.add_argument("--plot", help="write a PNG of the speed-up ratios here")
    bench.add_argument("--only", nargs="+", help="run only workloads whose name contains one of these")
    bench.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    bench.add_argument("--repeats", type=_number(int, 1, 1000), default=15, help="1..1000 (default: 15)")
    warm = sub.add_parser(
        "warmup", help="compile a train step into the AOT cache, so a new process starts it in a fraction of a second",
        description="Compile the train step of --model (cross-entropy, the optimizer given) for one batch shape and "
                    "save it in the AOT cache (funcnets.aot): a later process that builds the same step (same model, "
                    "optimizer settings, batch shape, dtype, versions) loads it without tracing or compiling.",
    )
    warm.add_argument("--model", default="resnet18", help="lenet or a name of funcnets.models.list_models() "
                      "(default: resnet18)")
    warm.add_argument("--batch", type=_number(int, 1, 1 << 20), default=32, help="batch size (default: 32)")
    warm.add_argument("--size", type=_number(int, 1, 4096), default=64,
                      help="image side for zoo models, 3 channels (default: 64; LeNet is 1x32x32)")
    warm.add_argument("--classes", type=_number(int, 1, 1 << 20), default=10, help="classes (default: 10)")
    warm.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd", help="default: sgd")
    warm.add_argument("--lr", type=_number(float, 0, 1e6, lo_open=True), default=0.01, help="default: 0.01")
    warm.add_argument("--momentum", type=_number(float, 0, 1), default=0.9, help="SGD momentum (default: 0.9)")
    warm.add_argument("--weight-decay", type=_number(float, 0, 1e6), default=0.0, help="default: 0")
    warm.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="default: fp32")
    return parser


def main(argv: list[str] | None = None) -> int:
    from funcnets._io import interrupt_guard, interrupt_message

    args = build_parser().parse_args(argv)
    # what a Ctrl-C says; cmd_train replaces it with one that names the last checkpoint
    status = {"describe": lambda: f"funcnets {args.command}: interrupted (Ctrl-C)"}
    with interrupt_guard(lambda: status["describe"]()):
        try:
            from funcnets.config import enable_compilation_cache

            enable_compilation_cache()
            if args.command == "train":
                return cmd_train(args, status)
            if args.command == "port":
                return _cmd_port(args)
            if args.command in ("evaluate", "predict", "export"):
                return getattr(folder_train, f"cmd_{args.command}")(args)
            return {"demo": cmd_demo, "parity": cmd_parity, "bench": cmd_bench, "warmup": cmd_warmup}[args.command](args)
        except (FuncnetsError, OSError, ValueError, TypeError, KeyError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            print(f"funcnets {args.command}: error: {message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # raised where a save that Ctrl-C interrupted completed
            print(interrupt_message(), file=sys.stderr)
            return 130


# --------------------------------------------------------------------------- train
def _warn(message: str) -> None:
    print(f"funcnets train: warning: {message}", file=sys.stderr)


def _data_source(spec: str) -> str:
    """'digits', or the MNIST directory as an absolute path (so a resume from elsewhere finds it)."""
    if spec == "digits":
        return spec
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FuncnetsError(f"--data must be 'digits' or a directory of MNIST IDX files; {spec!r} is neither.")
    return str(path.resolve())


def _load_data(source: str, model_name: str):
    from funcnets import data

    from funcnets import recipes

    size, channels = recipes.input_shape(model_name)  # raises for an unknown name, listing close matches
    if source == "digits":
        return data.load_digits(size=size, channels=channels)
    if not Path(source).is_dir():
        raise FuncnetsError(f"--data {source} is not a directory (any more); pass the MNIST directory with --data.")
    return data.load_mnist(source, size=size, channels=channels, num_classes=10)


def _weights_setting(path: str) -> dict:
    file = Path(path).expanduser()
    if not file.is_file():
        from funcnets import torch_io

        torch_io.load_file(file, arch=None)  # raises the missing-file message
    return {"file": str(file.resolve()), "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}


def _given(args) -> dict:
    """The run settings given on the command line (None: not given), normalised."""
    given = {k: getattr(args, k) for k in RUN_DEFAULTS}
    if given["data"] is not None:
        given["data"] = _data_source(given["data"])
    if given["weights"] is not None:
        given["weights"] = _weights_setting(given["weights"])
    if given["betas"] is not None:
        given["betas"] = list(given["betas"])
    return given


# the schedules' options (dest names); which apply to which: recipes.SCHEDULE_OPTIONS
SCHEDULE_OPTIONS = ("step_size", "gamma", "milestones", "max_lr", "pct_start", "base_momentum", "max_momentum",
                    "div_factor", "final_div_factor", "anneal_strategy", "patience", "factor", "plateau_metric")


def _schedule_options(args, schedule: str) -> dict:
    """The resolved options of ``schedule`` (given ones over torch's defaults), refusing
    options that do not apply to it."""
    from funcnets import recipes

    given = {k: getattr(args, k) for k in SCHEDULE_OPTIONS if getattr(args, k) is not None}
    own = recipes.SCHEDULE_OPTIONS.get(schedule)
    if own is None:
        raise FuncnetsError(f"unknown schedule {schedule!r}; choose one of {', '.join(recipes.SCHEDULES)}")
    for k in given:
        if k not in own:
            users = [s for s, o in recipes.SCHEDULE_OPTIONS.items() if k in o]
            raise FuncnetsError(f"{_option(k)} applies to --lr-schedule {' or '.join(users)}, not {schedule}.")
    out = {**own, **given}
    if out.get("milestones") is not None:
        out["milestones"] = sorted(out["milestones"])
    return out


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _show(key: str, value) -> str:
    if key == "weights" and isinstance(value, dict):
        return f"{value.get('file')} (sha256 {str(value.get('sha256'))[:12]})"
    if key == "epochs" and isinstance(value, list):
        return str(value[-1])
    if isinstance(value, list) and key == "betas":
        return ",".join(f"{v:g}" for v in value)
    return "not given" if value is None else str(value)


def _saved_schedule_defaults(schedule) -> dict:
    from funcnets import recipes

    return dict(recipes.SCHEDULE_OPTIONS.get(schedule, {})) if isinstance(schedule, str) else {}


def _merge_for_resume(info, given: dict, given_options: dict) -> dict:
    """The resumed run's settings: the checkpoint's, with the given ones where equal
    (``--epochs`` may grow). Raises listing every difference."""
    saved = info.settings
    merged, diffs = {}, []
    for key in RUN_DEFAULTS:
        if key not in saved:
            raise FuncnetsError(
                f"checkpoint {info.path} does not record the run's {_option(key)} (it was not written by "
                f"`funcnets train`); continue it from Python with funcnets.recipes.fit, or start afresh "
                f"with --overwrite."
            )
        old, new = saved[key], given[key]
        if new is None:
            merged[key] = old
        elif key == "epochs":
            if new < old[-1]:
                diffs.append((key, old, [new], " (a run can be extended, not shortened)"))
            merged[key] = old if new == old[-1] else [*old, new]
        elif key == "weights":
            if old is None or old.get("sha256") != new["sha256"]:
                diffs.append((key, old, new, ""))
            merged[key] = old
        elif new != old:
            diffs.append((key, old, new, ""))
        else:
            merged[key] = old
    # a run saved before an option existed ran with its default
    saved_opts = {**_saved_schedule_defaults(saved.get("schedule")), **saved.get("schedule_options", {})}
    for k, v in given_options.items():
        if k not in saved_opts:
            continue  # not an option of the saved schedule: _schedule_options says so
        if (sorted(v) if k == "milestones" else v) != saved_opts[k]:
            diffs.append((k, saved_opts[k], v, ""))
    if diffs:
        lines = [f"  {_option(k)}: saved {_show(k, a)}, given {_show(k, b)}{note}" for k, a, b, note in diffs]
        raise FuncnetsError(
            f"--resume: {info.path} was saved by a run with other settings:\n" + "\n".join(lines)
            + "\nDrop these options to continue with the saved settings (only --epochs may grow, which extends "
            "the run), or start a new run: --overwrite (deletes these checkpoints) or another --checkpoint-dir."
        )
    return merged


def _checkpoint_dir_and_choice(args) -> tuple[Path | None, int | Path | bool | None]:
    ckdir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    which = args.resume
    if which is None:
        return ckdir, None
    if args.overwrite:
        raise FuncnetsError("--resume continues the checkpoints that --overwrite would delete; pass one of them.")
    if isinstance(which, str):
        path = Path(which)
        if not path.is_dir():
            raise FuncnetsError(
                f"--resume {which}: no such checkpoint folder. Pass a step number (e.g. --resume 440), a "
                f"step_* folder, or --resume alone for the newest checkpoint in --checkpoint-dir."
            )
        parent = path.parent if (path / "manifest.json").exists() or path.name.startswith("step_") else path
        if ckdir is not None and ckdir.resolve() != parent.resolve():
            raise FuncnetsError(
                f"--resume {which} is not in --checkpoint-dir {ckdir}; pass the folder alone (new checkpoints "
                f"go beside it) or a checkpoint inside --checkpoint-dir."
            )
        return parent, path
    if ckdir is None:
        raise FuncnetsError("--resume needs --checkpoint-dir (where the checkpoints are).")
    return ckdir, (None if which is True else which)


def cmd_train(args, status: dict) -> int:
    from funcnets import checkpoint, recipes

    if folder_train.wants_folder(args):  # --data names image files (an ImageFolder or a .csv/.json list)
        return folder_train.cmd_train_folder(args, status)
    if args.devices not in ("1", "all"):
        raise FuncnetsError(f"--devices must be '1' or 'all', got {args.devices!r}.")
    ckdir, which = _checkpoint_dir_and_choice(args)
    out = recipes.check_writable(args.out, "--out")
    for name in ("*.safetensors", "history.json", "curves.png"):  # what a killed output write leaves behind
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
    if ckdir is not None:
        recipes.check_writable(ckdir, "--checkpoint-dir")
    given = _given(args)
    resuming = args.resume is not None
    info = None
    if resuming:
        info = checkpoint.find_checkpoint(ckdir, which, warn=_warn)
        given_options = {k: getattr(args, k) for k in SCHEDULE_OPTIONS if getattr(args, k) is not None}
        settings = _merge_for_resume(info, given, given_options)
        saved_precision = info.settings.get("precision", "fp32")  # runs saved before --precision: fp32
        if args.precision is not None and args.precision != saved_precision:
            raise FuncnetsError(
                f"--resume: {info.path} was saved by a run with other settings:\n  --precision: saved "
                f"{saved_precision}, given {args.precision}\nDrop --precision to continue with the saved one, "
                f"or start a new run: --overwrite (deletes these checkpoints) or another --checkpoint-dir."
            )
        if saved_precision != "fp32":
            settings["precision"] = saved_precision
        if "schedule_options" in info.settings:
            settings["schedule_options"] = info.settings["schedule_options"]
        _schedule_options(args, settings["schedule"])  # refuses options the saved schedule does not take
    else:
        if ckdir is not None and not args.overwrite and checkpoint.list_checkpoints(ckdir):
            newest = checkpoint.latest_checkpoint(ckdir)
            raise FuncnetsError(
                f"--checkpoint-dir {ckdir} already holds checkpoints (newest: {newest.name if newest else '?'}). "
                f"Continue that run with --resume, start afresh with --overwrite (deletes them), or pass "
                f"another --checkpoint-dir."
            )
        settings = {k: (RUN_DEFAULTS[k] if v is None else v) for k, v in given.items()}
        settings["epochs"] = [settings["epochs"]]
        settings["betas"] = list(settings["betas"])
        if args.precision not in (None, "fp32"):  # only stored when not fp32: older runs resume unchanged
            settings["precision"] = args.precision
        options = _schedule_options(args, settings["schedule"])
        if options:  # only the new schedules have options (runs saved before them resume unchanged)
            settings["schedule_options"] = options

    def describe() -> str:
        if ckdir is None:
            return "funcnets train: interrupted (Ctrl-C); no --checkpoint-dir, so nothing of this run was saved"
        newest = checkpoint.latest_checkpoint(ckdir)
        if newest is None:
            return "funcnets train: interrupted (Ctrl-C) before the first checkpoint; nothing of this run was saved"
        return (f"funcnets train: interrupted (Ctrl-C); the last checkpoint, {newest}, is intact: "
                f"continue with --resume")

    status["describe"] = describe
    model_name, epochs = settings["model"], settings["epochs"][-1]
    split = _load_data(settings["data"], model_name)
    recipes.check_batch_size(settings["batch_size"], len(split.x_train))
    weights = settings["weights"]["file"] if settings["weights"] and not resuming else None
    model, params, state = recipes.build_model(model_name, weights, settings["seed"])
    steps = len(split.x_train) // settings["batch_size"]
    lr = recipes.learning_rate(settings["lr"], settings["schedule"], settings["epochs"], steps,
                               settings.get("schedule_options"))
    opt = recipes.make_optimizer(settings["optimizer"], lr, settings["momentum"], settings["weight_decay"],
                                 settings["nesterov"], tuple(settings["betas"]))
    from funcnets import optim

    trainable = optim.select(params, include=settings["trainable"]) if settings["trainable"] else None
    print(model.summary(params, state) if model_name == "lenet" else f"{model_name}: "
          f"{sum(a.size for a in model.parameters(params)):,} parameters; head {_head(model)}")
    print(f"data: {len(split.x_train)} training / {len(split.x_test)} held-out images {split.x_train.shape[1:]}")
    if info is not None:
        print(f"resuming from {info.path} (epoch {info.epoch} of {epochs})")
        if info.epoch >= epochs:
            print(f"the run is complete (epoch {info.epoch} of {epochs}): nothing to train; writing its outputs. "
                  f"Pass --epochs N (more than {epochs}) to extend it.")
    fit_settings = {k: settings[k] for k in (*RUN_DEFAULTS, "schedule_options", "precision")
                    if k in settings and k not in ("batch_size", "seed", "augment_shift")}
    t = time.perf_counter()
    try:
        ts, history = recipes.fit(
            model, params, state, split, opt, epochs=epochs, batch_size=settings["batch_size"],
            seed=settings["seed"], trainable=trainable, checkpoint_dir=ckdir,
            resume=info.path if info is not None else False, overwrite=args.overwrite, settings=fit_settings,
            progress=not args.no_progress, desc=model_name, augment_shift=settings["augment_shift"],
            devices=args.devices, warn=_warn, learning_rate=lr, precision=settings.get("precision", "fp32"),
        )
    except recipes.NonFiniteLossError as e:
        raise FuncnetsError(f"{e} Nothing was written to --out {out}.") from None
    seconds = time.perf_counter() - t
    final = history[-1]
    print(f"held-out accuracy {final['test_accuracy']:.2%} after {final['epoch']} epochs ({seconds:.1f} s, compilation included)")
    _write_outputs(out, model_name, model, ts, history, title=f"{model_name} on {Path(settings['data']).name}")
    return 0


def _head(model) -> str:
    from funcnets.models._registry import head_path

    path = head_path(model)
    return f"{path} = {dict(model.named_modules())[path]!r} (train it alone: --trainable '{path}.*')"


def _write_outputs(out: Path, model_name: str, model, ts, history: list[dict], title: str) -> None:
    from funcnets import recipes, torch_io
    from funcnets._io import atomic_write_bytes, fault_point, json_bytes, protected

    with protected():  # all three or, after a kill, the previous ones and some of these
        torch_io.save_weights(out / f"{model_name}.safetensors", model, ts.params, ts.model_state)
        fault_point("outputs")
        atomic_write_bytes(out / "history.json", json_bytes(history))
        recipes.plot_history(history, out / "curves.png", title=title)
    print(f"wrote {out / (model_name + '.safetensors')} (loads in PyTorch), {out / 'curves.png'}, {out / 'history.json'}")


# --------------------------------------------------------------------------- parity
def cmd_parity(args) -> int:
    import json

    from funcnets import parity
    from funcnets._io import atomic_write_bytes

    if args.locate:
        return _cmd_locate(args)
    if args.zoo or args.model or args.only or args.markdown:
        return _cmd_zoo_parity(args)
    rows = parity.run(quick=args.quick)
    print(parity.format_table(rows))
    if args.json:
        atomic_write_bytes(args.json, json.dumps([r._asdict() | {"ok": r.ok} for r in rows], indent=1).encode())
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks within tolerance")
    return 1 if failed else 0


def _cmd_zoo_parity(args) -> int:
    """``funcnets parity --model NAME`` / ``--zoo [--only A,B] [--markdown FILE]``:
    funcnets' zoo models against torchvision's (:func:`funcnets.recipes.zoo_parity`)."""
    import jax

    from funcnets import recipes
    from funcnets.models import get_model, list_models

    if args.zoo and args.model:
        raise FuncnetsError("give --model NAME (one model) or --zoo (every model, --only to choose), not both")
    if args.only and not args.zoo:
        raise FuncnetsError("--only chooses models of --zoo; for one model pass --model NAME")
    if not (args.zoo or args.model):
        raise FuncnetsError("--markdown writes the table of --model NAME or --zoo; pass one of them")
    if args.model:
        names = [args.model.lower()]
    elif args.only:
        names = [n.strip().lower() for n in args.only.split(",") if n.strip()]
    else:
        names = list_models()
    for n in names:
        if n not in list_models():
            get_model(n)  # raises, listing close matches
    command = "funcnets parity " + (f"--model {names[0]}" if args.model else "--zoo" + (
        f" --only {','.join(names)}" if args.only else "")) + (f" --markdown {args.markdown}" if args.markdown else "")
    rows, start = [], time.perf_counter()
    for i, n in enumerate(names, 1):
        row = recipes.zoo_parity(n)
        rows.append(row)
        jax.clear_caches()  # the zoo's compiled programs would otherwise all stay in memory
        if len(names) > 1:
            print(f"[{i}/{len(names)}] {n}: max rel diff {row.max_rel:.2e} "
                  f"{'ok' if row.ok else 'FAILED ' + (row.error or '')} ({row.seconds:.0f} s)", flush=True)
        if args.markdown:  # after every model: a long --zoo run interrupted keeps what it measured
            _write_zoo_markdown(args.markdown, command, rows, len(names), time.perf_counter() - start)
    failed = [r for r in rows if not r.ok]
    print(recipes.format_zoo_table(rows))
    print(f"\n{_zoo_summary(rows, len(names), time.perf_counter() - start)}")
    if args.markdown:
        print(f"wrote {args.markdown}")
    return 1 if failed else 0


def _zoo_summary(rows, total: int, seconds: float) -> str:
    failed = sum(not r.ok for r in rows)
    done = "" if len(rows) == total else f" (stopped after {len(rows)} of the {total} models)"
    return (f"{len(rows) - failed} of {len(rows)} models within {rows[0].tol:g} (float32 eval logits, relative "
            f"to the largest torchvision logit) in {seconds:.0f} s{done}")


def _write_zoo_markdown(path: str, command: str, rows, total: int, seconds: float) -> None:
    import jax
    import torch
    import torchvision

    from funcnets import recipes
    from funcnets._io import atomic_write_bytes

    text = (f"# Zoo parity: funcnets vs torchvision\n\nGenerated by `{command}` (funcnets {_version()}, torch "
            f"{torch.__version__}, torchvision {torchvision.__version__}, jax {jax.__version__}, CPU). Each row: "
            f"torchvision's `weights=None` model (seed 0, BatchNorm statistics and affine parameters randomised "
            f"away from 0/1) loaded strictly into `funcnets.models.get_model(name)`; a seeded random input "
            f"(batch × channels × height × width) through both in eval mode, float32; the largest absolute "
            f"difference of the logits and that difference relative to the largest torchvision logit "
            f"(ok: ≤ {rows[0].tol:g}).\n\n" + recipes.format_zoo_table(rows, markdown=True)
            + f"\n\n{_zoo_summary(rows, total, seconds)}.\n")
    atomic_write_bytes(path, text.encode())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("funcnets")
    except PackageNotFoundError:
        return "(source tree)"


def _cmd_locate(args) -> int:
    """``funcnets parity --locate MODULE:CLASS``: where a port diverges (parity.locate)."""
    import importlib
    import importlib.util

    import jax
    import numpy as np
    import torch

    from funcnets import torch_io
    from funcnets.parity import locate

    if args.model and args.port:
        raise FuncnetsError("give --model or --port, not both")
    if not args.input_shape:
        raise FuncnetsError("--locate needs --input-shape, e.g. --input-shape 1,3,32,32")
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        raise FuncnetsError(f"--input-shape must be integers separated by commas, e.g. 1,3,224,224; "
                            f"got {args.input_shape!r}") from None
    module_name, _, class_name = args.locate.partition(":")
    if not module_name or not class_name:
        raise FuncnetsError(f"expected MODULE:CLASS, e.g. mypackage.models:Net; got {args.locate!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` has it
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise FuncnetsError(f"cannot import {class_name} from {module_name}: {e}. Give MODULE:CLASS importable "
                            f"from the current directory or the installed packages.") from None
    float64 = args.input_dtype == "float64"
    if float64:
        jax.config.update("jax_enable_x64", True)
    torch.manual_seed(0)
    module = cls().to(torch.float64 if float64 else torch.float32)
    if args.weights:
        sd = torch_io.load_file(args.weights, arch=None)
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    x = torch.rand(shape, dtype=torch.float64 if float64 else torch.float32)
    if args.model or args.port:
        if args.model:
            from funcnets.models import get_model

            model = get_model(args.model)
            what = f"funcnets.models.get_model({args.model!r})"
        else:
            spec = importlib.util.spec_from_file_location(Path(args.port).stem, args.port)
            if spec is None:
                raise FuncnetsError(f"--port {args.port!r} is not a Python file")
            generated = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(generated)
            model = generated.load()[0]
            what = args.port
        loaded = torch_io.load_state_dict(model, module.state_dict())
        params, state = loaded.params, loaded.state
    else:
        from funcnets.convert import from_torch

        model, params, state = from_torch(module, x)
        what = "from_torch"
    print(f"locating differences between {args.locate} (torch) and {what}, input {shape} {args.input_dtype}")
    report = locate(module, model, params, state, x, train=args.train, rtol=args.rtol)
    print(report)
    return 0 if report.first_divergence is None and report.error is None else 1


# --------------------------------------------------------------------------- port
def _cmd_port(args) -> int:
    import importlib
    import importlib.util

    import numpy as np
    import torch

    from funcnets import torch_io
    from funcnets.convert.port import write_port

    module_name, _, class_name = args.target.partition(":")
    if not module_name or not class_name:
        raise FuncnetsError(f"expected MODULE:CLASS, e.g. mypackage.models:Net; got {args.target!r}")
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        raise FuncnetsError(f"--input-shape must be integers separated by commas, e.g. 1,3,224,224; "
                            f"got {args.input_shape!r}") from None
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` has it
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise FuncnetsError(f"cannot import {class_name} from {module_name}: {e}. Give MODULE:CLASS importable "
                            f"from the current directory or the installed packages.") from None
    leaf_modules = {}
    for spec in args.leaf_module:
        torch_spec, eq, factory_spec = spec.partition("=")
        if not eq or ":" not in torch_spec or ":" not in factory_spec:
            raise FuncnetsError(f"--leaf-module takes PKG.MOD:TorchClass=PKG.MOD:factory, e.g. "
                                f"mynets:Gate=mynets_funcnets:make_gate; got {spec!r}")
        objs = []
        for part in (torch_spec, factory_spec):
            mod, _, name = part.partition(":")
            try:
                obj = importlib.import_module(mod)
                for attr in name.split("."):
                    obj = getattr(obj, attr)
            except (ImportError, AttributeError) as e:
                raise FuncnetsError(f"--leaf-module: cannot import {name} from {mod}: {e}") from None
            objs.append(obj)
        leaf_modules[objs[0]] = objs[1]
    module = cls()
    if args.weights:
        sd = torch_io.load_file(args.weights, arch=None)
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    module.eval()
    torch.manual_seed(0)
    x = torch.randint(0, 10, shape) if args.input_dtype == "int64" else torch.randn(
        shape, dtype=getattr(torch, args.input_dtype))
    src, weights = write_port(module, args.out, x, leaf_modules=leaf_modules)
    print(f"wrote {src} and {weights}")

    spec = importlib.util.spec_from_file_location(Path(src).stem, src)
    generated = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    model, params, state = generated.load()
    import jax

    from funcnets.config import one_off_compile_options

    if args.input_dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    y, _ = jax.jit(model.apply, compiler_options=one_off_compile_options())(params, state, x.numpy())
    with torch.no_grad():
        ref = module(x)
    ys, refs = jax.tree_util.tree_leaves(y), [r.numpy() for r in jax.tree_util.tree_leaves(
        ref, is_leaf=lambda v: isinstance(v, torch.Tensor))]
    diff = max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(ys, refs))
    scale = max(float(np.abs(b).max()) for b in refs) or 1.0
    tol = 1e-4 if args.input_dtype != "float64" else 1e-9
    print(f"parity against torch (eval, input {shape}): max difference {diff:.3e} "
          f"(relative {diff / scale:.3e}, tolerance {tol:g})")
    return 0 if diff / scale <= tol else 1


# --------------------------------------------------------------------------- warmup
def cmd_warmup(args) -> int:
    """Fill the AOT cache with one train step: the step ``benchmark.first_step_times``
    and a script building ``make_train_step(supervised_loss(model), optimizer)`` use."""
    import jax
    import jax.numpy as jnp

    from funcnets import aot, optim, train
    from funcnets.models import LeNet, get_model, list_models

    where = aot.cache_dir()
    if where is None:
        raise FuncnetsError("the AOT cache is off (FUNCNETS_AOT_CACHE=0, FUNCNETS_COMPILATION_CACHE=0, or its "
                            "directory is not writable): nothing to warm up. Unset them, or set "
                            "FUNCNETS_AOT_CACHE=/some/dir.")
    if args.model == "lenet":
        model, shape = LeNet(num_classes=args.classes), (1, 32, 32)
    elif args.model in list_models():
        model, shape = get_model(args.model, num_classes=args.classes), (3, args.size, args.size)
    else:
        raise FuncnetsError(f"--model must be lenet or a name of funcnets.models.list_models(), got {args.model!r}")
    if args.optimizer == "sgd":
        opt = optim.sgd(args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        opt = getattr(optim, args.optimizer)(args.lr, weight_decay=args.weight_decay)
    params, state = model.init(jax.random.PRNGKey(0))
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(0))
    x, y = jnp.zeros((args.batch, *shape)), jnp.zeros((args.batch,), jnp.int32)
    step = train.make_train_step(train.supervised_loss(model), opt,
                                 precision=None if args.precision == "fp32" else args.precision)
    before = dict(aot.stats)
    t0 = time.perf_counter()
    jax.block_until_ready(step(ts, (x, y)))
    seconds = time.perf_counter() - t0
    what = f"{args.model} train step (batch {args.batch}, {'x'.join(map(str, shape))}, {args.optimizer}, {args.precision})"
    if aot.stats["unkeyable"] > before["unkeyable"]:
        raise FuncnetsError(f"the {what} cannot be keyed for the AOT cache (see the funcnets.aot debug log)")
    t = aot.last_timings
    if aot.stats["loaded"] > before["loaded"]:
        print(f"{what}: already in the AOT cache ({where}); loaded in {t.get('load_s', 0):.2f} s")
    elif aot.stats["saved"] > before["saved"]:
        print(f"{what}: compiled and saved to {where} in {seconds:.1f} s (trace {t['trace_s']:.2f} s, lower "
              f"{t['lower_s']:.2f} s, compile {t['compile_s']:.2f} s, save {t.get('save_s', 0):.2f} s)")
    else:
        raise FuncnetsError(f"the {what} was compiled but could not be saved to {where} (see the warnings above)")
    return 0


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
