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
from funcnets.nn.linear import bilinear, linear

# --- convolution ----------------------------------------------------------------
from funcnets.nn.conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d

# --- padding --------------------------------------------------------------------
from funcnets.nn.padding import pad

# --- pooling --------------------------------------------------------------------
from funcnets.nn.pooling import (
    adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d, adaptive_max_pool2d,
    adaptive_max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d, lp_pool1d, lp_pool2d, lp_pool3d, max_pool1d,
    max_pool2d, max_pool3d, max_unpool1d, max_unpool2d, max_unpool3d, fractional_max_pool2d, fractional_max_pool3d,
)

# --- normalisation --------------------------------------------------------------
from funcnets.nn.batchnorm import batch_norm, batch_norm_groups
from funcnets.nn.instancenorm import instance_norm
from funcnets.nn.normalization import group_norm, layer_norm, local_response_norm, rms_norm

# --- activations ----------------------------------------------------------------
from funcnets.nn.activation import (
    celu, elu, gelu, hardsigmoid, hardswish, hardtanh, leaky_relu, log_softmax, mish, my_relu,
    prelu, relu, relu6, selu, sigmoid, silu, softmax, softmin, softplus, softsign, tanh, threshold,
    glu, hardshrink, logsigmoid, rrelu, softshrink, tanhshrink,
)

# --- dropout --------------------------------------------------------------------
from funcnets.nn.dropout import alpha_dropout, dropout, dropout1d, dropout2d, dropout3d, feature_alpha_dropout

# --- sparse ---------------------------------------------------------------------
from funcnets.nn.sparse import embedding, embedding_bag, embedding_renorm, one_hot

# --- attention ------------------------------------------------------------------
from funcnets.nn.attention import multi_head_attention_forward, scaled_dot_product_attention

# --- resampling -----------------------------------------------------------------
from funcnets.nn.upsampling import interpolate, upsample
from funcnets.nn.vision import affine_grid, grid_sample

# --- shape ----------------------------------------------------------------------
from funcnets.nn.distance import cosine_similarity, pairwise_distance, pdist
from funcnets.nn.flatten import flatten, unflatten
from funcnets.nn.fold import fold, unfold
from funcnets.nn.pixelshuffle import channel_shuffle, pixel_shuffle, pixel_unshuffle

__all__ = [
    # layouts
    "channels_last", "is_channels_last", "batch_last", "is_batch_last",
    # linear
    "linear", "bilinear",
    # convolution
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    # padding
    "pad",
    # pooling
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d", "fractional_max_pool2d", "fractional_max_pool3d",
    # normalisation
    "batch_norm", "batch_norm_groups", "instance_norm", "layer_norm", "group_norm", "rms_norm",
    "local_response_norm",
    # activations
    "relu", "my_relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu",
    "mish", "hardswish", "hardsigmoid", "hardtanh", "sigmoid", "tanh", "softplus", "softsign",
    "threshold", "softmax", "log_softmax", "softmin", "logsigmoid", "hardshrink", "softshrink",
    "tanhshrink", "glu", "rrelu",
    # dropout
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    # sparse
    "embedding", "embedding_bag", "embedding_renorm", "one_hot",
    # attention
    "scaled_dot_product_attention", "multi_head_attention_forward",
    # resampling
    "interpolate", "upsample", "grid_sample", "affine_grid",
    # shape
    "flatten", "unflatten", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "fold", "unfold", "cosine_similarity",
    "pairwise_distance", "pdist",
]
