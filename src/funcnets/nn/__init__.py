"""``torch.nn`` as pure functions: layers (frozen dataclasses) and ``functional``.

As in ``torch.nn.modules``, each layer family has its own module (``linear``, ``conv``,
``pooling``, ``batchnorm``, ``activation``, ``dropout``, ``flatten``, ``container``, ...),
holding the layers and, beside them, their functional forms; :mod:`funcnets.nn.functional`
indexes the functions. Lowering choices (``_conv.py``, ``_onednn.py``) stay private.
"""

from funcnets.nn import functional, init
from funcnets.nn._conv import conv_lowering
from funcnets.nn._onednn import error as onednn_error
from funcnets.nn.module import Module, Scope, replace

# --- linear ---------------------------------------------------------------------
from funcnets.nn.linear import Bilinear, Identity, Linear

# --- convolution ----------------------------------------------------------------
from funcnets.nn.conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

# --- padding --------------------------------------------------------------------
from funcnets.nn.padding import (
    CircularPad1d, CircularPad2d, CircularPad3d, ConstantPad1d, ConstantPad2d, ConstantPad3d, ReflectionPad1d,
    ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d, ReplicationPad3d, ZeroPad1d, ZeroPad2d,
    ZeroPad3d,
)

# --- pooling --------------------------------------------------------------------
from funcnets.nn.pooling import (
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d,
    AdaptiveMaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, LPPool1d, LPPool2d, LPPool3d, MaxPool1d, MaxPool2d,
    MaxPool3d, MaxUnpool1d, MaxUnpool2d, MaxUnpool3d, FractionalMaxPool2d, FractionalMaxPool3d,
)

# --- normalisation --------------------------------------------------------------
from funcnets.nn.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from funcnets.nn.instancenorm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from funcnets.nn.normalization import CrossMapLRN2d, GroupNorm, LayerNorm, LocalResponseNorm, RMSNorm

# --- activations ----------------------------------------------------------------
from funcnets.nn.activation import (
    CELU, ELU, GELU, SELU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU, LogSoftmax, Mish, PReLU,
    ReLU, ReLU6, Sigmoid, SiLU, Softmax, Softmin, Softplus, Softsign, Tanh, Threshold, GLU, Hardshrink,
    LogSigmoid, RReLU, Softmax2d, Softshrink, Tanhshrink,
)

# --- dropout --------------------------------------------------------------------
from funcnets.nn.dropout import AlphaDropout, Dropout, Dropout1d, Dropout2d, Dropout3d, FeatureAlphaDropout

# --- recurrent ------------------------------------------------------------------
from funcnets.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase

# --- sparse ---------------------------------------------------------------------
from funcnets.nn.sparse import Embedding, EmbeddingBag

# --- attention and transformers -------------------------------------------------
from funcnets.nn.attention import MultiheadAttention, NonDynamicallyQuantizableLinear
from funcnets.nn.transformer import (
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer,
)

# --- resampling -----------------------------------------------------------------
from funcnets.nn.upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

# --- shape ----------------------------------------------------------------------
from funcnets.nn.distance import CosineSimilarity, PairwiseDistance
from funcnets.nn.flatten import Flatten, Unflatten
from funcnets.nn.fold import Fold, Unfold
from funcnets.nn.pixelshuffle import ChannelShuffle, PixelShuffle, PixelUnshuffle

# --- containers -----------------------------------------------------------------
from funcnets.nn.container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential

# --- loss -----------------------------------------------------------------------
from funcnets.nn.loss import (
    BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, CTCLoss, GaussianNLLLoss,
    HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss, MarginRankingLoss, MSELoss, MultiLabelMarginLoss,
    MultiLabelSoftMarginLoss, MultiMarginLoss, NLLLoss, PoissonNLLLoss, SmoothL1Loss, SoftMarginLoss,
    TripletMarginLoss, TripletMarginWithDistanceLoss, LinearCrossEntropyLoss,
)
from funcnets.nn.adaptive import AdaptiveLogSoftmaxWithLoss

__all__ = [
    "functional", "init", "conv_lowering", "onednn_error", "Module", "Scope", "replace",
    # linear
    "Linear", "Bilinear", "Identity",
    # convolution
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    # padding
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
    "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d",
    # pooling
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d", "FractionalMaxPool2d", "FractionalMaxPool3d",
    # normalisation
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "LayerNorm", "GroupNorm", "RMSNorm", "LocalResponseNorm", "CrossMapLRN2d",
    # activations
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Hardswish", "Hardsigmoid", "Hardtanh", "Sigmoid", "Tanh", "Softplus", "Softsign",
    "Threshold", "Softmax", "LogSoftmax", "Softmin", "LogSigmoid", "Hardshrink", "Softshrink", "Tanhshrink",
    "GLU", "RReLU", "Softmax2d",
    # dropout
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    # recurrent
    "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
    # sparse
    "Embedding", "EmbeddingBag",
    # attention and transformers
    "MultiheadAttention", "NonDynamicallyQuantizableLinear", "Transformer", "TransformerEncoder",
    "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer",
    # resampling
    "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
    # shape
    "Flatten", "Unflatten", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "Fold", "Unfold", "CosineSimilarity",
    "PairwiseDistance",
    # containers
    "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
    # loss
    "L1Loss", "MSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss",
    "HuberLoss", "KLDivLoss", "PoissonNLLLoss", "GaussianNLLLoss", "CosineEmbeddingLoss", "MarginRankingLoss",
    "HingeEmbeddingLoss", "MultiLabelMarginLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss",
    "TripletMarginLoss", "SoftMarginLoss", "CTCLoss", "TripletMarginWithDistanceLoss", "LinearCrossEntropyLoss",
    "AdaptiveLogSoftmaxWithLoss",
]
