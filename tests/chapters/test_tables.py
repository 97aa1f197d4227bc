import pytest

from pullback_utils.chapters.tables import markdown_table


def test_rows_columns_and_formatting():
    text = markdown_table({"a": {"x": 1.23456, "y": "p|q"}, "b": {"x": 2e-5}}, index="name", precision=2)
    assert text.splitlines() == [
        "| name | x | y |",
        "|---|---|---|",
        "| a | 1.23 | p\\|q |",
        "| b | 2e-05 |  |",
    ]


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="rows is empty"):
        markdown_table({})
    with pytest.raises(ValueError, match="precision"):
        markdown_table({"a": {"x": 1}}, precision=-1)
