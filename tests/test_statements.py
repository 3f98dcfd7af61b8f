"""The true/false statement sets, their fixed splits, and uploads of the user's own set."""
import pandas as pd
import pytest

from analyses.statements import parse_statement_csv, statement_set, statement_set_names
from steering.errors import InvalidInputError


@pytest.mark.parametrize("name", statement_set_names())
def test_sets_are_balanced_split_by_fact_and_fixed(name: str) -> None:
    frame = statement_set(name)
    assert len(frame) >= 200 and frame["statement"].is_unique
    assert (frame.groupby("fact")["label"].apply(sorted) == pd.Series([[0, 1]] * frame["fact"].nunique(),
                                                                     index=sorted(frame["fact"].unique()))).all()
    assert frame.groupby("fact")["split"].nunique().max() == 1  # a fact's two statements stay together
    assert 0.2 < (frame["split"] == "test").mean() < 0.3
    pd.testing.assert_frame_equal(frame, statement_set(name))


def test_true_and_false_differ_in_the_object_only() -> None:
    frame = statement_set("cities")
    for _, fact in list(frame.groupby("fact"))[:20]:
        true, false = fact[fact.label == 1].iloc[0], fact[fact.label == 0].iloc[0]
        assert true.object != false.object
        head, _, tail = true.statement.rpartition(true.object)
        assert head + false.object + tail == false.statement


def test_larger_than_labels_follow_the_numbers() -> None:
    words = {"fifty-one": 51, "fifty-three": 53, "ninety-nine": 99}
    frame = statement_set("larger_than")
    for row in frame.itertuples():
        if row.subject in words and row.object in words:
            assert row.label == int(words[row.subject] > words[row.object])
    assert frame["statement"].str.match(r"^[A-Z][a-z-]+ is larger than [a-z-]+\.$").all()


def test_unknown_set_is_named() -> None:
    with pytest.raises(InvalidInputError, match="Unknown statement set 'moons'.*cities"):
        statement_set("moons")


def test_upload_parses_labels_and_stratifies_the_split() -> None:
    rows = "\n".join(f'"Statement {i}, with a comma.",{"true" if i % 2 else 0}' for i in range(12))
    frame = parse_statement_csv("statement,label\n" + rows)
    assert list(frame["label"]) == [i % 2 for i in range(12)]
    assert set(frame[frame.split == "test"]["label"]) == {0, 1}
    assert set(frame[frame.split == "train"]["label"]) == {0, 1}


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("sentence,truth\na,1", "line 1: the header must name"),
    ("statement,label\na,1\nb,0\nc,maybe", "line 4: label 'maybe'"),
    ("statement,label\na,1\n,0", "line 3: the statement is empty"),
    ("statement,label\na,1,extra", "line 2: expected 2 columns, found 3"),
    ("statement,label\na,1\nb,1\nc,0", "at least two true and two false"),
])
def test_malformed_uploads_name_the_line_and_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_statement_csv(text, "my.csv")
