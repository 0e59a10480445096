"""``torch.optim`` with torch's exact update rules, as optax ``GradientTransformation``s,
and parameter freezing (the ``requires_grad=False`` analog).

Each factory composes optax's own transformations where they are exact and adds only
what optax lacks:

* ``sgd``: torch's momentum buffer starts at the first gradient (``b₁ = g₁``) and then
  is ``b = μ·b + (1-τ)·g``. ``optax.trace`` equals that only for dampening τ = 0, so
  dampening uses :func:`scale_by_torch_momentum`.
* ``adam``: ``optax.scale_by_adam`` is torch's Adam (eps outside the sqrt) up to
  rounding, but for its float32 ``1 - βᵗ`` (torch's is a Python float), so its moments
  are used with a full-precision bias correction; torch's ``weight_decay`` is *coupled*
  L2 (added to the gradient). torch's
  AMSGrad keeps the max of the *raw* second moment and bias-corrects it afterwards,
  whereas ``optax.scale_by_amsgrad`` maxes the bias-corrected one, so AMSGrad uses
  :func:`scale_by_torch_amsgrad`. ``optax.scale_by_adam`` takes constant betas only;
  a cycled ``betas[0]`` (OneCycleLR, CyclicLR) uses :func:`scale_by_torch_adam`.
* ``adamw``: decoupled decay ``θ ← θ - lr·wd·θ`` (``optax.add_decayed_weights`` placed
  before the learning-rate scaling).

``lr`` may be a float or an optax schedule (a function of the step count, starting at 0).
Updates are applied with ``optax.apply_updates``.

Each optimizer has its own module as in ``torch.optim`` (``sgd.py``, ``adam.py``, ...);
this package is their index.
"""

from funcnets.optim._base import ScalarOrSchedule
from funcnets.optim.adam import adam, adamw, scale_by_torch_adam, scale_by_torch_amsgrad
from funcnets.optim.freeze import merge, select, split
from funcnets.optim.sgd import scale_by_torch_momentum, sgd
# --- more optimizers ---
from funcnets.optim.adadelta import adadelta
from funcnets.optim.adafactor import adafactor
from funcnets.optim.adagrad import adagrad, scale_by_torch_adagrad
from funcnets.optim.adamax import adamax
from funcnets.optim.asgd import asgd, averaged_params, scale_by_torch_asgd
from funcnets.optim.lbfgs import LBFGSOptimizer, LBFGSState, lbfgs
from funcnets.optim.muon import muon
from funcnets.optim.nadam import nadam, scale_by_torch_nadam
from funcnets.optim.param_groups import param_group_labels, param_groups
from funcnets.optim.radam import radam, scale_by_torch_radam
from funcnets.optim.rmsprop import rmsprop
from funcnets.optim.rprop import rprop, scale_by_torch_rprop
from funcnets.optim.sparse_adam import present_rows, scale_by_torch_sparse_adam, sparse_adam
# --- schedules, clipping, averaging ---
from funcnets.optim import lr_scheduler, swa_utils
from funcnets.optim.accumulate import accumulate_gradients, split_microbatches
from funcnets.optim.clip_grad import (
    ClipGradNormState,
    check_finite,
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)
from funcnets.optim.grad_scaler import GradScaler, cast_floating

__all__ = [
    "ScalarOrSchedule",
    # optimizers
    "sgd",
    "adam",
    "adamw",
    # building blocks
    "scale_by_torch_momentum",
    "scale_by_torch_adam",
    "scale_by_torch_amsgrad",
    # freezing
    "select",
    "split",
    "merge",
    # --- more optimizers ---
    "rmsprop",
    "adagrad",
    "adadelta",
    "adamax",
    "nadam",
    "lbfgs",
    "LBFGSOptimizer",
    "LBFGSState",
    "radam",
    "adafactor",
    "muon",
    "scale_by_torch_adagrad",
    "scale_by_torch_nadam",
    "scale_by_torch_radam",
    "rprop",
    "asgd",
    "sparse_adam",
    "scale_by_torch_rprop",
    "scale_by_torch_asgd",
    "scale_by_torch_sparse_adam",
    "averaged_params",
    "present_rows",
    "param_groups",
    "param_group_labels",
    # --- schedules, clipping, averaging ---
    "lr_scheduler",
    "swa_utils",
    "clip_grad_norm",
    "clip_grad_value",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "check_finite",
    "ClipGradNormState",
    "accumulate_gradients",
    "split_microbatches",
    "GradScaler",
    "cast_floating",
]
