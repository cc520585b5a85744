"""stbin: binary and few-bit neural networks with principled straight-through estimators.

The sub-packages, in layer order (each imports only from those above it):

* ``stbin.estimators`` - autograd Functions: stochastic and deterministic sign, Heaviside,
  quantized ReLU, magnitude-aware weight sign, each registered by name;
* ``stbin.nn`` - modules: binary activations, BinaryLinear, BinaryConv2d, QuantReLU;
* ``stbin.optim`` - latent-weight updates (mirror descent), Bop, flip ratio;
* ``stbin.analysis`` - the estimator-accuracy lab (exact gradients by enumeration);
* ``stbin.theory`` - coarse-gradient theory of activation-quantized networks;
* ``stbin.data`` - offline datasets, registered by name, and batch transforms;
* ``stbin.models`` - models (MLPs, LeNet-5, VGG, ResNet), registered by name;
* ``stbin.training`` - the trainer, its configuration and presets, checkpoints, summaries;
* ``stbin.recipes`` - paper-reproduction recipes behind ``stbin reproduce``;
* ``stbin.deploy`` - bit-packed export and the CPU XNOR-popcount inference engine;
* ``stbin.reporting`` - Markdown tables, figures and the palette shared by every report;
* ``stbin.cli`` - the ``stbin`` command.

>>> import torch
>>> from stbin.nn import BinaryLinear
>>> layer = BinaryLinear(4, 3)
>>> layer(torch.randn(2, 4)).shape
torch.Size([2, 3])
"""

__version__ = "0.1.0"
