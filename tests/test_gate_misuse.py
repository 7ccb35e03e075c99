"""Misusing the gate fails early and says how to fix it: decorator arguments, a missing
``init_app``, typing of decorated views, async views without ``flask[async]``."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from flask import Flask
from gate_support import (
    add_gated_routes,
    bearer,
)

from flask_licensechain import requires_any_feature, requires_feature, requires_license

TYPED_VIEWS = """
from typing import assert_type

from flask_licensechain import requires_any_feature, requires_feature, requires_license


@requires_feature("export", plan="pro")
def sync_view(report_id: int, *, fmt: str = "csv") -> dict[str, str]:
    return {}


@requires_any_feature("a", "b")
async def async_view(report_id: int) -> str:
    return ""


@requires_license
def bare(name: str) -> int:
    return 1


@requires_license(plan={"pro", "enterprise"})
async def with_plan() -> None:
    return None


async def use_them() -> None:
    assert_type(sync_view(1, fmt="x"), dict[str, str])
    pending = async_view(1)
    assert_type(await pending, str)
    assert_type(await async_view(1), str)
    assert_type(bare("x"), int)
    assert_type(await with_plan(), None)
    sync_view("not an int")  # the one expected error
"""


def test_decorator_misuse_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs feature names"):
        requires_feature(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one feature"):
        requires_feature()
    with pytest.raises(TypeError, match="at least one feature"):
        requires_any_feature()
    with pytest.raises(TypeError, match="non-empty strings"):
        requires_feature("")
    with pytest.raises(TypeError, match="plan="):
        requires_license(plan=[])


def test_wrapped_view_keeps_its_name_and_kind() -> None:
    import inspect

    @requires_feature("export")
    async def report(year: int) -> str:
        return str(year)

    @requires_license
    def summary(year: int) -> str:
        return str(year)

    assert report.__name__ == "report" and inspect.iscoroutinefunction(report)
    assert summary.__name__ == "summary" and not inspect.iscoroutinefunction(summary)
    assert list(inspect.signature(report).parameters) == ["year"]


def test_gate_without_extension_explains_itself() -> None:
    app = Flask(__name__)
    add_gated_routes(app)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="forget to call LicenseChain"):
        app.test_client().get("/reports/export", headers=bearer("x.y.z"))


@pytest.mark.slow
def test_decorated_views_keep_their_signatures_for_mypy(tmp_path: Any) -> None:
    from mypy import api as mypy_api

    snippet = tmp_path / "typed_views.py"
    snippet.write_text(TYPED_VIEWS)
    stdout, _, _ = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout
    assert 'Argument 1 to "sync_view" has incompatible type "str"; expected "int"' in errors[0]


def test_async_view_without_flask_async_fails_at_decoration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_asgiref(name: str, *args: Any) -> Any:
        return None if name == "asgiref" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_asgiref)
    with pytest.raises(RuntimeError, match=r"pip install 'flask\[async\]'"):

        @requires_feature("export")
        async def report() -> str:
            return "csv"

    @requires_feature("export")  # a plain view is fine without it
    def summary() -> str:
        return "ok"

    assert summary.__name__ == "summary"
