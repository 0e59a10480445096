"""The README's coverage list stays true: every torch.nn module class is either in
funcnets.nn (the loss classes included), a Lazy*/SyncBatchNorm module or the deprecated
NLLLoss2d and Container (not built by design), or named in the README's "not in funcnets yet" list."""

import inspect
import re
from pathlib import Path

import torch.nn as tnn

from funcnets import losses, nn

README = Path(__file__).resolve().parents[1] / "README.md"
# torch loss classes with no funcnets loss function yet (listed in the README)
LOSSES_NOT_YET: set[str] = set()


def _torch_module_classes() -> set[str]:
    return {
        n for n, c in vars(tnn.modules).items()
        if inspect.isclass(c) and issubclass(c, tnn.Module) and not n.startswith("_")
    }


def test_readme_lists_exactly_the_torch_nn_classes_funcnets_lacks():
    text = README.read_text()
    block = re.search(r"<!-- not-covered:start -->(.*?)<!-- not-covered:end -->", text, re.S).group(1)
    listed = {w.strip(" .\n") for w in block.replace("\n", " ").split(",") if w.strip(" .\n")}
    by_design = lambda n: n.startswith("Lazy") or n in ("SyncBatchNorm", "NLLLoss2d", "Container")  # noqa: E731
    missing = {n for n in _torch_module_classes() - set(nn.__all__) if not by_design(n)}
    assert listed == missing, f"README lists {sorted(listed - missing)} wrongly and misses {sorted(missing - listed)}"
    assert not listed & set(nn.__all__)


def test_every_torch_loss_class_has_a_funcnets_function():
    snake = lambda n: re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower()  # noqa: E731
    aliases = {"BCELoss": "binary_cross_entropy", "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
               "CrossEntropyLoss": "cross_entropy", "KLDivLoss": "kl_div", "NLLLoss": "nll_loss",
               "CTCLoss": "ctc_loss", "MSELoss": "mse_loss", "L1Loss": "l1_loss",
               "MultiLabelSoftMarginLoss": "multilabel_soft_margin_loss",
               "MultiLabelMarginLoss": "multilabel_margin_loss", "PoissonNLLLoss": "poisson_nll_loss",
               "GaussianNLLLoss": "gaussian_nll_loss", "LinearCrossEntropyLoss": "linear_cross_entropy"}
    classes = {n for n in _torch_module_classes() if n.endswith("Loss")} - LOSSES_NOT_YET - {"NLLLoss2d"}
    lacking = [n for n in classes if not hasattr(losses, aliases.get(n, snake(n)))]
    assert not lacking, lacking
    assert not LOSSES_NOT_YET & set(nn.__all__), "a loss class was added: take it off LOSSES_NOT_YET"


def test_every_torch_loss_class_with_a_function_is_a_funcnets_nn_class():
    classes = {n for n in _torch_module_classes() if n.endswith("Loss")} - LOSSES_NOT_YET - {"NLLLoss2d"}
    assert classes - set(nn.__all__) == set()


def test_every_torch_optimizer_has_a_funcnets_optimizer():
    import torch.optim as topt

    from funcnets import optim

    classes = {n for n, c in vars(topt).items() if inspect.isclass(c) and issubclass(c, topt.Optimizer)} - {"Optimizer"}
    snake = lambda n: {"AdamW": "adamw", "RMSprop": "rmsprop", "NAdam": "nadam", "RAdam": "radam", "ASGD": "asgd",
                       "LBFGS": "lbfgs", "SparseAdam": "sparse_adam"}.get(n, n.lower())  # noqa: E731
    lacking = sorted(n for n in classes if snake(n) not in optim.__all__)
    assert not lacking, f"torch.optim classes with no funcnets optimizer: {lacking}"
