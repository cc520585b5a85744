"""The package overview in ``stbin/__init__.py`` names every sub-package."""

import pkgutil

import stbin


def test_overview_lists_every_subpackage():
    subpackages = [m.name for m in pkgutil.iter_modules(stbin.__path__) if m.ispkg]
    assert len(subpackages) >= 10
    missing = [name for name in subpackages if f"``stbin.{name}``" not in stbin.__doc__]
    assert not missing, f"stbin/__init__.py does not describe: {missing}"
