"""stbin: binary and few-bit neural networks with principled straight-through estimators.

Layers of the package (each a sub-package):

* :mod:`stbin.estimators` — autograd Functions: stochastic and deterministic sign,
  Heaviside, quantized ReLU, magnitude-aware weight sign (the math is in each docstring);
* :mod:`stbin.nn` — modules: activations, ``BinaryLinear``, ``BinaryConv2d``, ``QuantReLU``;
* :mod:`stbin.optim` — latent-weight updates (mirror descent), Bop, flip ratio;
* :mod:`stbin.analysis` — estimator-accuracy lab (exact gradients by enumeration);
* :mod:`stbin.theory` — coarse-gradient theory of activation-quantized networks;
* :mod:`stbin.data` — offline datasets;
* :mod:`stbin.cli` — the ``stbin`` command.
"""

__version__ = "0.1.0"
