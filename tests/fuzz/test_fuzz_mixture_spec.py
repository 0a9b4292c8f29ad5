"""Fuzzing mixture specs (``data.mix``: a TOML table, Megatron's "weight path ..." string, or
the same as a list). Any value, any string and any TOML text gives (name, weight) pairs of
distinct non-empty names and finite weights > 0 whose sum is finite too, or a DataError, within
the time and memory bounds.
"""

import math

from fuzz_support import HOSTILE_NUMBERS, json_values, read_within_bounds
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.mix import parse_mix
from tinygradlm.errors import DataError
from tinygradlm.parse import parse_toml

weights = st.one_of(
    st.floats(),
    st.integers(-(10**400), 10**400),
    st.sampled_from([1e308, 5e-324, 0, -0.0, True, "1", None]),
    json_values,
)
names = st.one_of(st.text(max_size=12), st.sampled_from(["", "books", "a\0b", "../x", " "]))
specs = st.one_of(
    st.dictionaries(names, weights, max_size=5),
    st.lists(st.one_of(weights, names), max_size=8),
    st.lists(st.one_of(st.sampled_from(HOSTILE_NUMBERS), names), max_size=8).map(" ".join),
    st.text(max_size=60),
    json_values,
)


def _check(pairs):
    assert pairs, "an empty mixture was accepted"
    assert len({name for name, _ in pairs}) == len(pairs)
    assert all(isinstance(name, str) and name for name, _ in pairs)
    assert all(isinstance(w, float) and math.isfinite(w) and w > 0 for _, w in pairs)
    assert math.isfinite(math.fsum(w for _, w in pairs))


@given(spec=specs)
def test_any_mixture_spec_gives_finite_positive_weights_or_a_data_error(spec):
    pairs = read_within_bounds(lambda: parse_mix(spec), DataError)
    if pairs is not None:
        _check(pairs)


@given(
    text=st.one_of(
        st.text(max_size=200),
        st.lists(st.tuples(names, st.sampled_from(HOSTILE_NUMBERS)), max_size=5).map(
            lambda items: "[data.mix]\n" + "".join(f'"{n}" = {w}\n' for n, w in items)
        ),
    )
)
def test_a_mix_table_in_any_toml_text_gives_valid_weights_or_a_data_error(text):
    def read():
        table = parse_toml(text, "train.toml", DataError)
        return parse_mix(table.get("data", {}).get("mix", {"x": 1.0}))

    pairs = read_within_bounds(read, DataError)
    if pairs is not None:
        _check(pairs)
