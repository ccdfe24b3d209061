"""The quarantine reasons: one per kind, each documented with its cause in README.md."""

from __future__ import annotations

from recspark.io.reasons import CAUSES, Reason, all_reasons, markdown_table
from tests.conftest import REPO


def test_every_reason_is_distinct_and_has_a_cause() -> None:
    reasons = all_reasons()
    assert len(reasons) == len(set(reasons))
    assert list(CAUSES) == sorted(CAUSES, key=reasons.index)  # in definition order
    assert set(CAUSES) == set(reasons)
    assert "milliseconds" in CAUSES[Reason.TIMESTAMP_MILLISECONDS]
    assert "`;`" in CAUSES[Reason.WRONG_SEPARATOR]


def test_readme_table_of_reasons_matches_the_code() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, (
        "regenerate: python -c 'from recspark.io.reasons import markdown_table; print(markdown_table())'"
    )
