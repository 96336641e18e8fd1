"""Descriptions from docstrings: Google, NumPy and Sphinx styles."""

from tools import Tool
from tools.docstrings import parse_docstring


def google(location: str, unit: str = "c") -> None:
    """Get the weather.

    Works for any city on Earth,
    big or small.

    Args:
        location (str): City name,
            such as Paris.
        unit: Temperature unit.

    Returns:
        str: A forecast.
    """


def numpy_style(location: str, unit: str = "c") -> None:
    """Get the weather.

    Parameters
    ----------
    location : str
        City name,
        such as Paris.
    unit : {"c", "f"}, optional
        Temperature unit.

    Returns
    -------
    str
        A forecast.
    """


def sphinx(location: str, unit: str = "c") -> None:
    """Get the weather.

    :param location: City name,
        such as Paris.
    :type location: str
    :param str unit: Temperature unit.
    :returns: A forecast.
    """


def properties(fn: object) -> dict[str, object]:
    return Tool.from_function(fn).parameters["properties"]  # type: ignore[arg-type,no-any-return]


EXPECTED = {
    "location": {"description": "City name, such as Paris.", "type": "string"},
    "unit": {"default": "c", "description": "Temperature unit.", "type": "string"},
}


def test_google_style() -> None:
    """Google Args entries (with types and continuation lines) describe parameters."""
    assert properties(google) == EXPECTED
    assert Tool.from_function(google).description == (
        "Get the weather.\n\nWorks for any city on Earth, big or small."
    )


def test_numpy_style() -> None:
    """NumPy Parameters sections describe parameters; Returns is not a parameter."""
    assert properties(numpy_style) == EXPECTED
    assert Tool.from_function(numpy_style).description == "Get the weather."


def test_sphinx_style() -> None:
    """Sphinx :param: fields (with or without a type) describe parameters."""
    assert properties(sphinx) == EXPECTED
    assert Tool.from_function(sphinx).description == "Get the weather."


def test_no_docstring() -> None:
    """Without a docstring the description is empty and no property has a description."""

    def bare(x: int) -> None:
        pass

    assert Tool.from_function(bare).description == ""
    assert properties(bare) == {"x": {"type": "integer"}}


def test_numpy_shared_entry_and_google_keyword_section() -> None:
    """'a, b : int' describes both; Google 'Keyword Args' counts as parameters."""
    numpy_doc = parse_docstring("Sum.\n\nParameters\n----------\na, b : int\n    Terms.\n")
    google_doc = parse_docstring("Sum.\n\nKeyword Args:\n    scale: Factor.\n")
    assert numpy_doc.params == {"a": "Terms.", "b": "Terms."}
    assert google_doc.params == {"scale": "Factor."}


def test_one_line_summary() -> None:
    """A one-line docstring is the whole description."""
    assert parse_docstring("Current weather. location: city name.").description == (
        "Current weather. location: city name."
    )
