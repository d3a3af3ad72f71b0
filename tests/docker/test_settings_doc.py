"""docs/settings.md is generated from the Settings class and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import Field

from cat_reward import settings_doc
from cat_reward.settings import Settings

from ._support import ROOT

DOC = ROOT / "docs" / "settings.md"
SCRIPT = ROOT / "scripts" / "settings-doc"


def _table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| `CAT_")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_docs_settings_md_is_up_to_date():
    assert DOC.read_text() == settings_doc.render(), "docs/settings.md is stale: run scripts/settings-doc"


def test_the_script_writes_that_document_and_checks_it(tmp_path):
    output = tmp_path / "settings.md"
    subprocess.run([sys.executable, str(SCRIPT), "--output", str(output)], check=True, capture_output=True, timeout=60)
    assert output.read_text() == settings_doc.render() == DOC.read_text()
    check = [sys.executable, str(SCRIPT), "--check", "--output", str(output)]
    assert subprocess.run(check, capture_output=True, timeout=60).returncode == 0
    output.write_text(output.read_text().replace("`CAT_DATA_DIR`", "`CAT_DATADIR`"))
    stale = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "out of date" in stale.stderr


def test_one_row_per_field_named_as_pydantic_settings_reads_it(monkeypatch):
    rows = _table_rows(DOC.read_text())
    names = [row[0].strip("`") for row in rows]
    assert names == ["CAT_" + name.upper() for name in Settings.model_fields]
    assert all(len(row) == 4 and row[1] and row[2] and row[3] for row in rows), "every cell filled"
    # The names are the ones Settings really reads (not just a naming convention).
    monkeypatch.setenv("CAT_MAX_ROLLOUTS", "7")
    monkeypatch.setenv("CAT_JUDGE_HOME", "/elsewhere")
    settings = Settings(_env_file=None)
    assert (settings.max_rollouts, settings.judge_home) == (7, Path("/elsewhere"))


def test_defaults_under_the_home_directory_are_shown_with_a_tilde():
    text = DOC.read_text()
    assert str(Path.home()) + "/" not in text
    rows = {row[0]: row for row in _table_rows(text)}
    assert rows["`CAT_JUDGE_HOME`"][2] == "`~/.cache/cat-reward`"
    assert rows["`CAT_DATA_DIR`"][2] == "`~/.local/share/cat-reward`"
    other_home = Path("/nonexistent-home")
    assert settings_doc.default_text(Settings.model_fields["judge_home"], home=other_home) == (
        f"`{Path.home() / '.cache' / 'cat-reward'}`"
    )


def test_rows_render_types_bounds_and_defaults():
    rows = {row[0]: row for row in _table_rows(DOC.read_text())}
    assert rows["`CAT_MIN_CRITERIA`"][1:3] == ["integer, >= 1, <= 64", "`5`"]
    assert rows["`CAT_LLM_TIMEOUT_S`"][1:3] == ["number, > 0", "`300`"]
    assert rows["`CAT_ANCHOR_BACKEND`"][1:3] == ["one of `auto`, `vllm`, `openai`, `generic`", "`auto`"]
    assert rows["`CAT_ANSWER_EXTRACTORS`"][1:3] == ["list of strings, comma-separated", "`boxed,answer_is`"]
    assert rows["`CAT_INCLUDE_QUESTION`"][1:3] == ["boolean", "`false`"]
    assert rows["`CAT_ANCHOR_API_KEY`"][1:3] == ["secret string", "unset"]


def test_the_document_follows_the_class():
    """A field added to Settings shows up, with its bounds and an escaped description."""

    class Extended(Settings):
        new_knob_s: float = Field(default=2.5, gt=0, description="Either | or.")

    rows = _table_rows(settings_doc.render(Extended))
    assert rows[-1] == ["`CAT_NEW_KNOB_S`", "number, > 0", "`2.5`", "Either \\| or."]
    assert len(rows) == len(Settings.model_fields) + 1


def test_fallback_descriptions_only_fill_gaps():
    """Delete an entry once settings.py describes the field (or drops it)."""
    for name in settings_doc.FALLBACK_DESCRIPTIONS:
        assert name in Settings.model_fields, f"{name} is no longer a setting"
        assert not Settings.model_fields[name].description, f"{name} now has its own description"
