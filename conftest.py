"""Settings for every test run (``make test``) and the doctest collection over the package
(``pytest --doctest-modules stbin``).

The deploy engine's compiled plans are cached in the ignored ``build/plan-cache`` of this checkout
during tests (unless ``STBIN_PLAN_CACHE`` is set), never in the user's ``~/.cache``.

Modules that cannot even be imported without an optional extra are not collected when the
extra is missing; examples that need an extra check for it themselves (e.g. matplotlib in
``stbin.reporting.figures``).
"""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("STBIN_PLAN_CACHE", str(Path(__file__).resolve().parent / "build" / "plan-cache"))

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("numba") is None:  # the deploy extra: the inference kernels
    collect_ignore_glob.append("stbin/deploy/kernels.py")
