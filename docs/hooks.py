"""MkDocs hook: expand ``<!-- api funcnets.x -->`` into one mkdocstrings entry per name
in ``funcnets.x.__all__``, so the API reference cannot miss a public name; a public
function or class without a docstring of its own is a warning (an error with
``--strict``)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
import sys
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.funcnets_api")
MARKER = re.compile(r"^<!-- api (?P<module>[\w.]+) -->$", re.M)


def reference_path(module_name: str, name: str) -> str | None:
    """The dotted path mkdocstrings renders for ``module_name.name``; None for submodules.

    A function named like its own submodule (``funcnets.optim.sgd``, the module, and
    ``funcnets.optim.sgd.sgd``, the function) is reached through its definition, since
    the dotted name finds the submodule first; so is a name a module serves lazily from
    its ``__getattr__`` (``funcnets.from_torch``), which static analysis cannot see.
    """
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    if inspect.ismodule(obj):
        return None
    named_like_submodule = f"{module_name}.{name}" in sys.modules
    lazy = name not in vars(module)  # served by the module's __getattr__: invisible to griffe
    if (named_like_submodule or lazy) and (inspect.isfunction(obj) or inspect.isclass(obj)):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"{module_name}.{name}"


def public_entries(module_name: str) -> list[tuple[str, str | None]]:
    """``(name, path)`` for every name in the module's ``__all__``, in that order."""
    module = importlib.import_module(module_name)
    return [(name, reference_path(module_name, name)) for name in module.__all__]


def has_docstring(obj: object) -> bool:
    """Whether a function or class has a docstring of its own (other objects: True).

    ``@dataclass`` writes ``Name(field, ...)`` as the docstring of a class without one,
    which documents nothing, so it does not count.
    """
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        generated = dataclasses.is_dataclass(obj) or hasattr(obj, "_fields")  # @dataclass, NamedTuple
        if generated and doc and doc.startswith(obj.__name__ + "("):
            return False
        return bool(doc and doc.strip())
    if inspect.isroutine(obj) or hasattr(obj, "__wrapped__"):  # functions, jit/custom_vjp wrappers
        return bool((getattr(obj, "__doc__", None) or "").strip())
    return True  # constants and type aliases: documented by the module's text


def page_of(module_name: str) -> str:
    """The reference page of a module: ``funcnets.nn.functional`` -> ``nn_functional.md``."""
    return (module_name.removeprefix("funcnets.").replace(".", "_") or "funcnets") + ".md"


def expand(markdown: str, api_dir: Path) -> str:
    def one(match: re.Match) -> str:
        lines = []
        for name, path in public_entries(match["module"]):
            if path is not None:
                if not has_docstring(getattr(importlib.import_module(match["module"]), name)):
                    log.warning(f"{match['module']}.{name} is public (in __all__) but has no docstring")
                lines.append(f"::: {path}\n")
                continue
            sub = f"{match['module']}.{name}"
            if (api_dir / page_of(sub)).exists():  # a module with its own page: link to it
                lines.append(f"- [`{sub}`]({page_of(sub)}): the module.\n")
            else:  # a small module without a page of its own: here, with its members
                lines.append(f"::: {sub}\n    options:\n      members: true\n")
        return "\n".join(lines)

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' hook signature)
    markdown = markdown.replace("<!-- torch-names -->", torch_table())
    if not page.file.src_uri.startswith("api/"):
        return markdown
    return expand(markdown, Path(config["docs_dir"]) / "api")


# --------------------------------------------------------------------------- torch names
# Which torch name each public funcnets name reproduces. Generated from the modules'
# __all__ with these rules, so the table on "Coming from PyTorch" grows with funcnets;
# tests/test_docs.py checks every torch name against the installed torch/torchvision,
# and that every public name is either translated or listed in FUNCNETS_ONLY.
TORCH_HOME = {
    "funcnets.nn": "torch.nn",
    "funcnets.nn.functional": "torch.nn.functional",
    "funcnets.nn.init": "torch.nn.init",
    "funcnets.nn.parametrizations": "torch.nn.utils.parametrizations",
    "funcnets.nn.rnn_utils": "torch.nn.utils.rnn",
    "funcnets.losses": "torch.nn.functional",
    "funcnets.optim": "torch.optim",
    "funcnets.optim.lr_scheduler": "torch.optim.lr_scheduler",
    "funcnets.optim.swa_utils": "torch.optim.swa_utils",
    "funcnets.models": "torchvision.models",
    "funcnets.autograd": "torch.autograd.functional",
}
TORCH_RENAMED = {
    "funcnets.optim.sgd": "torch.optim.SGD", "funcnets.optim.adam": "torch.optim.Adam",
    "funcnets.optim.adamw": "torch.optim.AdamW", "funcnets.optim.rmsprop": "torch.optim.RMSprop",
    "funcnets.optim.adagrad": "torch.optim.Adagrad", "funcnets.optim.adadelta": "torch.optim.Adadelta",
    "funcnets.optim.adamax": "torch.optim.Adamax", "funcnets.optim.nadam": "torch.optim.NAdam",
    "funcnets.optim.radam": "torch.optim.RAdam",
    "funcnets.optim.rprop": "torch.optim.Rprop", "funcnets.optim.asgd": "torch.optim.ASGD",
    "funcnets.optim.sparse_adam": "torch.optim.SparseAdam", "funcnets.optim.lbfgs": "torch.optim.LBFGS",
    "funcnets.optim.adafactor": "torch.optim.Adafactor", "funcnets.optim.muon": "torch.optim.Muon",
    "funcnets.losses.adaptive_log_softmax_with_loss": "torch.nn.AdaptiveLogSoftmaxWithLoss",
    "funcnets.losses.adaptive_log_prob": "torch.nn.AdaptiveLogSoftmaxWithLoss.log_prob",
    "funcnets.losses.adaptive_predict": "torch.nn.AdaptiveLogSoftmaxWithLoss.predict",
    "funcnets.optim.clip_grad_norm": "torch.nn.utils.clip_grad_norm_",
    "funcnets.optim.clip_grad_value": "torch.nn.utils.clip_grad_value_",
    "funcnets.optim.clip_grad_norm_": "torch.nn.utils.clip_grad_norm_",
    "funcnets.optim.clip_grad_value_": "torch.nn.utils.clip_grad_value_",
    "funcnets.optim.clip_grads_with_norm_": "torch.nn.utils.clip_grads_with_norm_",
    "funcnets.optim.get_total_norm": "torch.nn.utils.get_total_norm",
    "funcnets.optim.GradScaler": "torch.amp.GradScaler",
    "funcnets.autograd.backward": "torch.autograd.backward",
    "funcnets.autograd.relu": "torch.relu",
    "funcnets.autograd.my_relu": "torch.autograd.Function",
    "funcnets.autograd.graph": "torch.Tensor.grad_fn",
    "funcnets.nn.Module": "torch.nn.Module",
    "funcnets.nn.replace": "torch.nn.Module.register_module",
    "funcnets.torch_io.state_dict": "torch.nn.Module.state_dict",
    "funcnets.torch_io.load_state_dict": "torch.nn.Module.load_state_dict",
    "funcnets.torch_io.save_weights": "torch.save",
    "funcnets.torch_io.load_weights": "torch.load",
    "funcnets.parallel.initialize": "torch.distributed.init_process_group",
    "funcnets.config.enable_float64": "torch.set_default_dtype",
    "funcnets.config.default_device": "torch.device",
    "funcnets.nn.NonDynamicallyQuantizableLinear": "torch.nn.modules.linear.NonDynamicallyQuantizableLinear",
    "funcnets.nn.init.calculate_fan_in_and_fan_out": "torch.nn.init._calculate_fan_in_and_fan_out",
    "funcnets.nn.functional.flatten": "torch.flatten",
    "funcnets.nn.functional.unflatten": "torch.unflatten",
    "funcnets.nn.functional.embedding_renorm": "torch.embedding_renorm_",
    "funcnets.nn.functional.my_relu": "torch.autograd.Function",
    "funcnets.models.BasicBlock": "torchvision.models.resnet.BasicBlock",
    "funcnets.models.Bottleneck": "torchvision.models.resnet.Bottleneck",
    "funcnets.optim.select": "torch.Tensor.requires_grad_",
    "funcnets.optim.param_groups": "torch.optim.Optimizer.add_param_group",
    "funcnets.optim.swa_utils.AveragedState": "torch.optim.swa_utils.AveragedModel",
}  # fmt: skip
# Public names with no torch counterpart: JAX plumbing (optax building blocks, layouts,
# states as pytrees) and the tutorial's own Net.
FUNCNETS_ONLY = frozenset({
    "funcnets.nn.conv_lowering", "funcnets.nn.onednn_error", "funcnets.nn.Scope",
    "funcnets.nn.functional.channels_last", "funcnets.nn.functional.is_channels_last",
    "funcnets.nn.functional.batch_last", "funcnets.nn.functional.is_batch_last",
    "funcnets.nn.functional.batch_norm_groups", "funcnets.nn.init.default_bound",
    "funcnets.optim.ScalarOrSchedule", "funcnets.optim.scale_by_torch_momentum",
    "funcnets.optim.scale_by_torch_adam", "funcnets.optim.scale_by_torch_amsgrad",
    "funcnets.optim.split", "funcnets.optim.merge", "funcnets.optim.scale_by_torch_adagrad",
    "funcnets.optim.scale_by_torch_nadam", "funcnets.optim.scale_by_torch_radam",
    "funcnets.optim.param_group_labels", "funcnets.optim.check_finite",
    "funcnets.optim.ClipGradNormState", "funcnets.optim.accumulate_gradients",
    "funcnets.optim.split_microbatches", "funcnets.optim.cast_floating",
    "funcnets.optim.lr_scheduler.PlateauState", "funcnets.optim.lr_scheduler.inject_lr",
    "funcnets.optim.lr_scheduler.InjectLrState", "funcnets.optim.lr_scheduler.set_lr",
    "funcnets.optim.lr_scheduler.get_lr", "funcnets.models.LeNet", "funcnets.autograd.Graph",
    "funcnets.nn.parametrizations.WeightNorm", "funcnets.nn.parametrizations.SpectralNorm",
    "funcnets.optim.scale_by_torch_rprop", "funcnets.optim.scale_by_torch_asgd",
    "funcnets.optim.scale_by_torch_sparse_adam", "funcnets.optim.averaged_params", "funcnets.optim.present_rows",
    "funcnets.optim.LBFGSOptimizer", "funcnets.optim.LBFGSState",
})  # fmt: skip
TRANSLATED_MODULES = [*TORCH_HOME, "funcnets.torch_io", "funcnets.parallel", "funcnets.config"]


def torch_name(funcnets_name: str, funcnets_only: frozenset[str] = FUNCNETS_ONLY) -> str | None:
    """The torch name ``funcnets_name`` reproduces; None for funcnets' own additions."""
    if funcnets_name in funcnets_only:
        return None
    if funcnets_name in TORCH_RENAMED:
        return TORCH_RENAMED[funcnets_name]
    module, _, name = funcnets_name.rpartition(".")
    home = TORCH_HOME.get(module)
    return f"{home}.{name}" if home else None


def torch_rows() -> list[tuple[str, str, str]]:
    """``(torch name, funcnets name, reference id)`` for every public name with a torch twin."""
    rows = []
    for module_name in TRANSLATED_MODULES:
        for name, path in public_entries(module_name):
            torch = torch_name(f"{module_name}.{name}") if path else None
            if torch:
                rows.append((torch, f"{module_name}.{name}", path))
    return rows


def torch_table() -> str:
    """The rows of :func:`torch_rows` as one table per funcnets module."""
    out, current = [], None
    for t, f, ref in torch_rows():
        module = f.rpartition(".")[0]
        if module != current:
            current = module
            out += ["", f"#### `{module}`", "", "| torch | funcnets |", "|---|---|"]
        out.append(f"| `{t}` | [`{f}`][{ref}] |")
    return "\n".join(out) + "\n"
