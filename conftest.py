"""Doctest collection over the package (``pytest --doctest-modules stbin``, run by ``make test``).

Modules that cannot even be imported without an optional extra are not collected when the
extra is missing; examples that need an extra check for it themselves (e.g. matplotlib in
``stbin.reporting.figures``).
"""

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("numba") is None:  # the deploy extra: the inference kernels
    collect_ignore_glob.append("stbin/deploy/kernels.py")
