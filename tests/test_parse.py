"""tinygradlm.parse: JSON and TOML with the caller's error type for every failure, and
tinygradlm.memory's check before allocation."""

import math

import pytest

from tinygradlm.errors import CheckpointError, DataError
from tinygradlm.memory import available_bytes, check_fits, format_bytes
from tinygradlm.model import GPTConfig, parameter_shapes
from tinygradlm.model.config import PRESETS
from tinygradlm.parse import parse_json, parse_toml, read_json, read_toml


def test_json_and_toml_round_trip_plain_values():
    assert parse_json('{"a": [1, 2.5, "x", null, true]}', "f") == {"a": [1, 2.5, "x", None, True]}
    assert parse_toml(b'a = 1\n[t]\nb = "x"\n', "f") == {"a": 1, "t": {"b": "x"}}


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deep_nesting_is_the_callers_error_not_a_recursion_error(depth):
    with pytest.raises(CheckpointError, match=r"^f\.json: not valid JSON: nested too deeply"):
        parse_json("[" * depth + "]" * depth, "f.json", CheckpointError)
    with pytest.raises(DataError, match=r"^c\.toml: not valid TOML: nested too deeply"):
        parse_toml("a = " + "[" * depth + "]" * depth, "c.toml", DataError)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_refuses_non_standard_constants(constant):
    with pytest.raises(DataError, match=f"{constant} is not a JSON value"):
        parse_json(f'{{"loss": {constant}}}', "m", DataError)


def test_invalid_utf8_names_the_offset():
    with pytest.raises(DataError, match=r"^x: not UTF-8 text \(invalid byte at offset 5\)"):
        parse_toml(b"a = 1\xff", "x", DataError)
    with pytest.raises(DataError, match="offset 2"):
        parse_json(b'"a\xfe"', "x", DataError)


def test_syntax_errors_keep_the_parsers_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"a": 1,\n "b": }')
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON: .*line 2"):
        read_json(path, DataError)
    (tmp_path / "bad.toml").write_text("a = \n")
    with pytest.raises(DataError, match=r"bad\.toml: not valid TOML"):
        read_toml(tmp_path / "bad.toml", DataError)


def test_missing_and_unreadable_files_are_the_callers_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_json(tmp_path / "absent.json", DataError)
    with pytest.raises(DataError, match="cannot read"):
        read_toml(tmp_path, DataError)  # a directory


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_is_what_parameter_shapes_tiles(name):
    config = PRESETS[name]
    assert config.parameter_count() == sum(math.prod(s) for s in parameter_shapes(config).values())
    padded = GPTConfig.preset("tiny", padded_vocab_size=640)
    assert padded.parameter_count() == sum(math.prod(s) for s in parameter_shapes(padded).values())


def test_parameter_count_of_a_huge_config_costs_nothing():
    config = GPTConfig(n_layer=10**9, n_embd=768, n_head=12)
    assert config.parameter_count() > 7 * 10**15  # computed, not allocated


def test_check_fits_refuses_more_than_the_machine_has_with_the_estimate():
    check_fits(1024, "a small thing")
    with pytest.raises(DataError, match=r"^a model needs about .* more than the .* available$"):
        check_fits(available_bytes() * 2 + 1, "a model", DataError)


def test_format_bytes_reads_like_a_person_writes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20) == "3.0 MiB"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"
    assert format_bytes(2**80).endswith("TiB")
