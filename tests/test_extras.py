"""Optional extras: one check (stbin._extras.require_extra) and one message form for every missing package."""

import sys

import pytest

from stbin._extras import MissingExtraError, extra_available, install_hint, require_extra


def test_a_missing_module_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    assert not extra_available("numba")
    with pytest.raises(MissingExtraError) as e:
        require_extra("numba", extra="deploy", purpose="stbin bench-inference")
    assert isinstance(e.value, ValueError)  # the CLI's user-error path: one line, exit 2
    assert str(e.value) == "numba is needed for stbin bench-inference but is not installed: pip install 'stbin[deploy]'"


def test_every_module_is_checked_and_the_package_name_shown(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # a submodule already imported does not hide a missing parent
    with pytest.raises(MissingExtraError, match=r"^Pillow is needed for images but is not installed: "
                                                r"pip install 'stbin\[images\]' \(or use PNG files\)$"):
        require_extra("json", "PIL", "PIL.Image", extra="images", purpose="images", name="Pillow",
                      alternative="use PNG files")


def test_installed_modules_pass():
    require_extra("json", "json.decoder", extra="reports", purpose="nothing")
    assert install_hint("reports") == "pip install 'stbin[reports]'"


def test_every_extra_named_in_the_package_exists():
    """Each ``extra="..."`` / ``install_hint("...")`` in stbin names an extra of pyproject.toml."""
    import re
    import tomllib
    from pathlib import Path

    import stbin

    root = Path(__file__).parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {m for f in Path(stbin.__file__).parent.rglob("*.py")
             for m in re.findall(r'(?:extra=|install_hint\()"(\w+)"', f.read_text())}
    assert {"reports", "deploy", "images", "tensorboard"} <= named  # the scan finds the callers
    assert named <= set(extras), named - set(extras)
