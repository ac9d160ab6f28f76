"""Deeply nested JSON is refused before it is parsed, in every JSON field."""

import pytest

from nnmem import NnmemError, parse
from nnmem.scenario import load_json
from nnmem.validation import MAX_JSON_DEPTH, json_depth


def test_depth_counts_levels_exactly_up_to_the_bound():
    assert json_depth("{}") == 1
    assert json_depth('{"a": [[1], {"b": "[[[[[[" }]}') == 3
    for n in (1, 63, 64, 65, 100, 129, 200):
        assert (json_depth("[" * n + "]" * n) > MAX_JSON_DEPTH) == (n > MAX_JSON_DEPTH)


def test_unbalanced_text_is_walked():
    assert json_depth("[" * 30) == 30
    assert json_depth("[" * 100) > MAX_JSON_DEPTH


def test_load_json_refuses_deep_nesting_before_parsing():
    # 100,000 levels kill the Python of a Pyodide page (a JavaScript stack overflow).
    with pytest.raises(NnmemError) as caught:
        load_json("[" * 100_000 + "]" * 100_000, "config", "Config")
    assert caught.value.problems[0].field == "config"
    assert "nested too deeply" in caught.value.problems[0].message
    assert load_json("[" * 64 + "]" * 64, "config", "Config") is not None


def test_a_pasted_config_nested_deeply_names_the_config_field():
    deep = '{"hidden_size": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(NnmemError) as caught:
        parse({"model": "transformer", "config": deep})
    assert caught.value.problems[0].field == "config"
