"""Deploy op types, registered by name in :data:`OPS` (see :mod:`stbin.deploy.ops.base`).

================= ======== ======== ============================================================
type              in       out      what
================= ======== ======== ============================================================
``flatten``       any      same     (N, ...) -> (N, F); bits NHWC -> (N, H*W*CW) words
``linear``        float    float    ``y = x W^T + b`` in float32 (first/last layers)
``blinear``       float    float    the same with bit-packed ±1 weights (times ``scale``)
``conv2d``        float    float    float convolution NCHW (first layer, real shortcuts)
``affine``        float    float    per-channel ``y * alpha + beta`` (a batch norm with no sign after)
``bits_float``    bits     float    unpack ±1 values (NHWC bits -> NCHW floats)
``sign``          float    bits     folded BN + sign on float rows: bit = not (S*y >= T)
``sign2d``        float    bits     as ``sign`` per channel, NCHW float -> NHWC bits (also RSign)
``bdense``        bits     bits     binary GEMM fused with integer thresholds (BN + sign folded)
``bdense_f``      bits     float    binary GEMM, ``y = c * dot + b``
``bconv2d``       bits     bits     binary conv fused with integer thresholds
``bconv2d_f``     bits     float    binary conv, ``y = c * dot + b`` -> NCHW float
``maxpool2d``     bits     bits     max pooling on packed bits
``avgpool2d``     float    float    average pooling (global average pooling)
``save``          any      same     keep the tensor in a slot (residual blocks)
``load``          any      slot     continue with a saved tensor
``add``           float    float    add a saved tensor (shortcut)
``zero_pad_shortcut`` float float   option-A shortcut: stride and zero channels
``bconv2d_res``   bits     any      fused residual tail: binary conv, BN, shortcut add (, next sign)
``conv2d_sign``   float    bits     fused first conv: float conv, bias, BN, sign and packing
================= ======== ======== ============================================================
"""

from stbin.deploy.ops import binary_layers as _binary_layers  # noqa: F401  (each module registers its ops)
from stbin.deploy.ops import float_layers as _float_layers  # noqa: F401
from stbin.deploy.ops import fused as _fused  # noqa: F401
from stbin.deploy.ops import layout as _layout  # noqa: F401
from stbin.deploy.ops import pooling as _pooling  # noqa: F401
from stbin.deploy.ops import residual as _residual  # noqa: F401
from stbin.deploy.ops import signs as _signs  # noqa: F401
from stbin.deploy.ops.base import OPS, GraphState, Op, OpType, RunContext, TensorSpec, infer_graph, register_op

__all__ = ["OPS", "Op", "OpType", "TensorSpec", "GraphState", "RunContext", "register_op", "infer_graph"]
