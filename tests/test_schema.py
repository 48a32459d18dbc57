"""A table's schema, unit by unit: which cells are missing or numbers, each column's type read from
its cells (and the refusals that name the column and the fix), the train job's table parameters,
what a schema records, and which data a model of a schema can predict."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlpoc.errors import DatasetError, JobFailed
from mlpoc.schema import (
    CATEGORY,
    NUMBER,
    REGRESSION,
    Column,
    Layout,
    Schema,
    infer,
    is_missing,
    number,
    problem,
    refuse,
)

ADVICE = (
    "Fix those cells (a missing value may be left empty), or list the column in "
    "params.ignore_columns"
)


# -- cells --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["", "  ", "na", "NA", " n/a ", "NaN", "null", "NULL", "None"])
def test_missing_cells(cell: str) -> None:
    assert is_missing(cell) is True
    assert math.isnan(number(cell))  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["0", "x", "-", "nul", "nones", "n a"])
def test_filled_cells(cell: str) -> None:
    assert is_missing(cell) is False


@pytest.mark.parametrize(
    ("cell", "value"),
    [("4.5", 4.5), (" -3 ", -3.0), ("1e3", 1000.0), ("0", 0.0), ("+7", 7.0)],
)
def test_numbers(cell: str, value: float) -> None:
    assert number(cell) == value


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "1e400", "abc", "1,5", "3 kg"])
def test_not_numbers(cell: str) -> None:
    assert number(cell) is None


# -- problem and refuse: one sentence per column -----------------------------------------------
@pytest.mark.parametrize(
    ("lines", "shown"),
    [
        ([3], "1 bad cells (line 3)"),
        ([3, 9], "2 bad cells (lines 3, 9)"),
        ([2, 3, 4, 5, 6], "5 bad cells (lines 2, 3, 4, 5, 6)"),
        ([2, 3, 4, 5, 6, 7], "6 bad cells (lines 2, 3, 4, 5, 6, …)"),
        (list(range(2, 102)), "100 bad cells (lines 2, 3, 4, 5, 6, …)"),
    ],
)
def test_a_problem_counts_the_cells_and_shows_the_first_five_lines(
    lines: list[int], shown: str
) -> None:
    assert problem("a", lines, "bad cells") == f"column 'a': {shown}"


def test_refuse_raises_one_error_for_every_problem_and_nothing_without() -> None:
    assert refuse("t.csv", [], "Fix it") is None
    with pytest.raises(DatasetError) as refused:
        refuse("t.csv", ["column 'a': one", "column 'b': two"], "Fix it")
    assert str(refused.value) == "t.csv: column 'a': one; column 'b': two. Fix it"


# -- infer: each column's type from its cells --------------------------------------------------
def test_numbers_and_categories_are_read_from_the_cells() -> None:
    names = ["n", "c", "m"]
    cells = [
        ["1", " 2.5", "NA", ""],
        [" b ", "a", "b", "none"],
        ["1", "x", "2", "y"],
    ]
    assert infer(names, cells, "t.csv") == (
        Column("n", NUMBER),
        Column("c", CATEGORY, ("a", "b")),
        Column("m", CATEGORY, ("1", "2", "x", "y")),
    )


def test_the_columns_must_match_the_names() -> None:
    with pytest.raises(ValueError, match="zip"):
        infer(["a", "b"], [["1"]], "t.csv")


def test_every_column_with_a_problem_is_named_in_one_refusal() -> None:
    typos = [str(i) for i in range(20)]
    typos[3] = "oops"
    ids = [f"n{i}" for i in range(51)]
    with pytest.raises(DatasetError) as refused:
        infer(["t", "e", "name", "f", "b"], [typos, ["", "NA"], ids, [" "], ["1"]], "t.csv")
    assert str(refused.value) == (
        "t.csv: column 't': 1 cells are not numbers in a column of numbers (line 5); "
        "column 'e' is empty in every row; column 'name' has 51 distinct text values in 51 "
        "rows (an id or free text, not a category: name it with params.id_column); "
        f"column 'f' is empty in every row. {ADVICE}"
    )


def cells(numbers: int, texts: int) -> list[str]:
    return [str(i) for i in range(numbers)] + [f"t{i % 2}" for i in range(texts)]


@pytest.mark.parametrize(
    ("numbers", "texts", "typos"),
    [
        (9, 1, True),  # 90 % numbers: the text is a typo
        (18, 2, True),
        (27, 3, True),
        (99, 1, True),
        (8, 1, False),  # 89 %: a category
        (8, 2, False),  # 80 %: a category
        (17, 2, False),
        (1, 1, False),
    ],
)
def test_a_column_mostly_of_numbers_has_typos(numbers: int, texts: int, typos: bool) -> None:
    column = cells(numbers, texts) + ["NA"] * 5  # missing cells count for neither
    if typos:
        lines = ", ".join(str(numbers + 2 + i) for i in range(min(texts, 5)))
        with pytest.raises(DatasetError) as refused:
            infer(["a"], [column], "t.csv")
        assert str(refused.value).startswith(
            f"t.csv: column 'a': {texts} cells are not numbers in a column of numbers "
            f"(line{'s' if texts > 1 else ''} {lines})"
        )
    else:
        (inferred,) = infer(["a"], [column], "t.csv")
        assert inferred.type == CATEGORY


@pytest.mark.parametrize(
    ("rows", "distinct", "refused"),
    [
        (50, 50, False),  # 50 rows, all different: still a category
        (51, 51, True),  # over 50 rows, all different: an id
        (51, 50, False),
        (1000, 500, False),
        (1002, 501, True),  # over 500 values: free text
    ],
)
def test_an_id_or_free_text_is_not_a_category(rows: int, distinct: int, refused: bool) -> None:
    column = [f"v{i % distinct:04d}" for i in range(rows)] + ["", "na"]
    if not refused:
        (inferred,) = infer(["name"], [column], "t.csv")
        assert inferred.categories == tuple(sorted({f"v{i:04d}" for i in range(distinct)}))
        return
    with pytest.raises(DatasetError) as error:
        infer(["name"], [column], "t.csv")
    assert str(error.value) == (
        f"t.csv: column 'name' has {distinct} distinct text values in {rows} rows (an id or "
        f"free text, not a category: name it with params.id_column). {ADVICE}"
    )


# -- Column and Schema --------------------------------------------------------------------------
def test_a_column_records_its_categories_only_when_it_is_one() -> None:
    assert Column("a", NUMBER).to_json() == {"name": "a", "type": "number"}
    assert Column("a", NUMBER, ("x",)).to_json() == {"name": "a", "type": "number"}
    assert Column("c", CATEGORY, ("x", "y")).to_json() == {
        "name": "c",
        "type": "category",
        "categories": ["x", "y"],
    }
    assert Column("c", CATEGORY).to_json() == {"name": "c", "type": "category", "categories": []}


MIXED = Schema(
    columns=(Column("a", NUMBER), Column("c", CATEGORY, ("u", "v"))),
    label="species",
    task=REGRESSION,
    id="animal_id",
    ignored=("notes", "date"),
)


def test_a_schema_names_its_features_and_finds_its_columns() -> None:
    assert MIXED.features == ["a", "c"]
    assert MIXED.column("c") == Column("c", CATEGORY, ("u", "v"))
    assert MIXED.column("a") == Column("a", NUMBER)
    assert MIXED.column("species") is None
    assert MIXED.numeric is False
    assert Schema(columns=(Column("a", NUMBER), Column("b", NUMBER))).numeric is True
    assert Schema(columns=(Column("c", CATEGORY), Column("b", NUMBER))).numeric is False
    assert MIXED.id_column == "animal_id"
    assert Schema(columns=()).id_column == "id"


def test_a_schema_round_trips_through_json() -> None:
    raw = MIXED.to_json()
    assert raw == {
        "task": "regression",
        "label": "species",
        "id": "animal_id",
        "ignored": ["notes", "date"],
        "columns": [
            {"name": "a", "type": "number"},
            {"name": "c", "type": "category", "categories": ["u", "v"]},
        ],
    }
    assert Schema.from_json(raw) == MIXED


def test_a_bare_schema_records_only_what_it_has_and_reads_back_the_defaults() -> None:
    bare = Schema(columns=(Column("a", NUMBER),))
    assert bare.to_json() == {
        "task": "classification",
        "label": "label",
        "columns": [{"name": "a", "type": "number"}],
    }
    read = Schema.from_json({"columns": [{"name": 1, "type": "category"}]})
    assert read == Schema(columns=(Column("1", CATEGORY, ()),))
    assert (read.label, read.task, read.id, read.ignored) == ("label", "classification", None, ())
    numbers = Schema.from_json({"columns": [{"name": "c", "type": "category", "categories": [1]}]})
    assert numbers.columns == (Column("c", CATEGORY, ("1",)),)


def test_a_version_from_before_schemas_has_numbers_and_label() -> None:
    old = Schema.numbers(["p0", "p1"])
    assert old == Schema(columns=(Column("p0", NUMBER), Column("p1", NUMBER)))
    assert (old.label, old.task, old.id, old.ignored) == ("label", "classification", None, ())


@pytest.mark.parametrize(
    ("other", "why"),
    [
        (MIXED, None),
        (  # more columns, in another order: fine
            Schema(
                columns=(Column("z", NUMBER), Column("c", CATEGORY, ("w",)), Column("a", NUMBER)),
                label="species",
                task=REGRESSION,
            ),
            None,
        ),
        (
            Schema(columns=MIXED.columns, label="species"),
            "it is a regression model, the data is for classification",
        ),
        (
            Schema(columns=MIXED.columns, label="sex", task=REGRESSION),
            "it predicts 'species', the data's label is 'sex'",
        ),
        (
            Schema(columns=(Column("a", NUMBER),), label="species", task=REGRESSION),
            "it needs the column 'c'",
        ),
        (
            Schema(
                columns=(Column("a", CATEGORY), Column("c", CATEGORY)),
                label="species",
                task=REGRESSION,
            ),
            "it takes 'a' as a number, the data has a category",
        ),
        (
            Schema(
                columns=(Column("a", NUMBER), Column("c", NUMBER)), label="species", task=REGRESSION
            ),
            "it takes 'c' as a category, the data has a number",
        ),
    ],
)
def test_which_data_a_model_of_a_schema_can_predict(other: Schema, why: str | None) -> None:
    assert MIXED.accepts(other) == why


# -- Layout: the train job's table parameters ---------------------------------------------------
def test_the_default_layout() -> None:
    assert Layout.from_params({}) == Layout("label", None, (), "classification")
    assert Layout.from_params({"other": 1}) == Layout()
    assert Layout().skipped() == {"label"}


def test_the_parameters_name_the_columns() -> None:
    params = {
        "label_column": "y",
        "id_column": "k",
        "ignore_columns": ["n1", "n2"],
        "task": "regression",
    }
    layout = Layout.from_params(params)
    assert layout == Layout(label="y", id="k", ignore=("n1", "n2"), task="regression")
    assert layout.skipped() == {"y", "k", "n1", "n2"}
    assert Layout.from_params({"label_column": "x" * 256}).label == "x" * 256


def test_over_a_folder_what_the_parameters_do_not_name_is_the_live_versions() -> None:
    base = Schema(columns=(), label="species", id="k", ignored=("notes",), task="regression")
    assert Layout.from_params({}, base) == Layout("species", "k", ("notes",), "regression")
    assert Layout.from_params(
        {"label_column": "y", "id_column": None, "ignore_columns": [], "task": "classification"},
        base,
    ) == Layout("y", None, (), "classification")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"label_column": ""}, "params.label_column must be a column name; got ''"),
        (
            {"label_column": "x" * 257},
            f"params.label_column must be a column name; got '{'x' * 257}'",
        ),
        ({"label_column": 3}, "params.label_column must be a column name; got 3"),
        ({"id_column": ""}, "params.id_column must be a column name; got ''"),
        ({"id_column": ["k"]}, "params.id_column must be a column name; got ['k']"),
        ({"id_column": "x" * 257}, f"params.id_column must be a column name; got '{'x' * 257}'"),
        (
            {"ignore_columns": "notes"},
            "params.ignore_columns must be a list of column names; got 'notes'",
        ),
        (
            {"ignore_columns": ("notes",)},
            "params.ignore_columns must be a list of column names; got ('notes',)",
        ),
        (
            {"ignore_columns": ["notes", ""]},
            "params.ignore_columns must be a list of column names; got ['notes', '']",
        ),
        (
            {"ignore_columns": ["notes", 4]},
            "params.ignore_columns must be a list of column names; got ['notes', 4]",
        ),
        (
            {"task": "ranking"},
            "params.task must be one of ['classification', 'regression']; got 'ranking'",
        ),
        ({"task": None}, "params.task must be one of ['classification', 'regression']; got None"),
    ],
)
def test_bad_table_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(JobFailed) as refused:
        Layout.from_params(params)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "params",
    [
        {"id_column": "label"},
        {"label_column": "y", "id_column": "y"},
        {"ignore_columns": ["notes", "label"]},
        {"id_column": "k", "ignore_columns": ["k"]},
    ],
)
def test_the_label_the_id_and_the_ignored_columns_differ(params: dict[str, Any]) -> None:
    with pytest.raises(JobFailed) as refused:
        Layout.from_params(params)
    assert str(refused.value) == (
        "params.label_column, params.id_column and params.ignore_columns must name different "
        "columns"
    )


@pytest.mark.parametrize(
    "params", [{"label_column": None}, {"label_column": None, "id_column": "k"}]
)
def test_a_table_without_a_label_column_is_refused_by_name(params: dict[str, Any]) -> None:
    # a null label is not "no id": it is refused with the key, before any row is read
    with pytest.raises(JobFailed, match=r"^params\.label_column must be a column name; got None$"):
        Layout.from_params(params)
