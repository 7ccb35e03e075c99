"""README.md stays true: its two opening commands and its configuration table."""

from __future__ import annotations

from pathlib import Path

from flask_licensechain.config import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_configuration_table_matches_the_settings() -> None:
    start = README.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = README.index("<!-- settings-table:end -->")
    assert README[start:end].strip() == settings_table().strip(), (
        "README's table is stale: paste flask_licensechain.config.settings_table()"
    )


def test_ci_runs_the_readme_test_command() -> None:
    opening = README.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(opening) == 2 and "pytest" in opening[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert opening[1] in ci.splitlines()


def test_middleware_readme_describes_shared_options_once() -> None:
    import dataclasses

    from licensechain_middleware import GateConfig

    from flask_licensechain.core.options import SHARED_OPTIONS

    text = (ROOT / "middleware" / "licensechain_middleware" / "README.md").read_text("utf-8")
    shared = text.split("<!-- shared-options:start -->")[1].split("<!-- shared-options:end -->")[0]
    listed = {name.strip().strip("`") for name in shared.strip().split(",")}
    assert listed == set(SHARED_OPTIONS)
    table = text.split("<!-- gate-options:start -->")[1].split("<!-- gate-options:end -->")[0]
    rows = {
        name.strip().strip("`")
        for line in table.strip().splitlines()[2:]
        for name in line.split("|")[1].split("/")
    }
    gate_fields = {f.name for f in dataclasses.fields(GateConfig)}
    assert rows == gate_fields - set(SHARED_OPTIONS), "each gate-only option once, no shared one"
    assert set(SHARED_OPTIONS) <= gate_fields
