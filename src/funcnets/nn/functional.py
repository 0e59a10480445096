"""``torch.nn.functional`` as pure JAX functions, with torch's layouts and semantics.

Layouts: inputs NCHW, conv weights OIHW ``(out, in/groups, kH, kW)``, linear weights
``(out, in)``. Padding is explicit and symmetric (never ``'SAME'``). Functions that
update buffers in torch (``batch_norm``) return the new buffers instead.

Inside :func:`channels_last` (what ResNet's trunk runs in on CPU) the image functions
take and return 4-D activations as ``(N, H, W, C)``, inside :func:`batch_last` (LeNet's
trunk on CPU) as ``(C, H, W, N)``; weights keep torch's layouts.

Each function lives beside its layer in the family's module (``nn/conv.py``,
``nn/pooling.py``, ...), as torch.nn's modules are laid out; this module is the index
that ``import funcnets.nn.functional as F`` reads.
"""

from funcnets.nn._layout import batch_last, channels_last, is_batch_last, is_channels_last

# --- linear ---------------------------------------------------------------------
from funcnets.nn.linear import linear

# --- convolution ----------------------------------------------------------------
from funcnets.nn.conv import conv2d

# --- pooling --------------------------------------------------------------------
from funcnets.nn.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d

# --- normalisation --------------------------------------------------------------
from funcnets.nn.batchnorm import batch_norm, batch_norm_groups

# --- activations ----------------------------------------------------------------
from funcnets.nn.activation import log_softmax, my_relu, relu, softmax

# --- dropout --------------------------------------------------------------------
from funcnets.nn.dropout import dropout

# --- shape ----------------------------------------------------------------------
from funcnets.nn.flatten import flatten

__all__ = [
    # layouts
    "channels_last", "is_channels_last", "batch_last", "is_batch_last",
    # linear
    "linear",
    # convolution
    "conv2d",
    # pooling
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    # normalisation
    "batch_norm", "batch_norm_groups",
    # activations
    "relu", "my_relu", "softmax", "log_softmax",
    # dropout
    "dropout",
    # shape
    "flatten",
]
