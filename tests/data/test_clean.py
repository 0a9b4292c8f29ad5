"""Cleaning: normalisation rules, each line and document filter, and the config."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.clean import (
    DOCUMENT_RULES,
    LINE_RULES,
    CleanConfig,
    clean_documents,
    clean_text,
    normalise,
)
from tinygradlm.data.documents import Document
from tinygradlm.data.quality import quality_signals
from tinygradlm.errors import DataError

# Ordinary English prose: passes every rule, including the C4 line rules that are off by default
# (each line ends in a full stop and has at least five words).
PROSE_LINES = [
    "The history of the river valley is a story of farmers and traders.",
    "They built small villages with wooden houses and planted wheat in the soil.",
    "Over the centuries the villages grew into towns connected by roads and bridges.",
    "Merchants carried salt, cloth and pottery from the coast to the mountains.",
    "In winter the roads were closed and the towns lived on what they had stored.",
    "Every spring the river flooded the lower fields and left a layer of rich mud.",
    "Today the valley is known for its orchards and its quiet lanes.",
    "An old stone mill still stands by the water where the road meets the bridge.",
]
PROSE = "\n".join(PROSE_LINES)

# Prose that uses none of Gopher's stop words (the, be, to, of, and, that, have, with).
NO_STOP_WORDS = (
    "Farmers planted wheat, barley, oats, rye, beans, onions, leeks, cabbages and turnips. "
    "Merchants carried salt, cloth, pottery, copper, amber, wool across distant mountains. "
    "Villages grew into towns; towns grew into cities. Roads connected markets, bridges "
    "crossed rivers, mills ground grain every autumn. Children played beside quiet lanes "
    "while old men told stories about floods, famines, harvests, weddings, wars. Today "
    "orchards cover hillsides; tourists visit stone mills, ancient churches, crowded inns."
).replace(" and ", ", ")


def run(text, config=None):
    kept, report = clean_documents([Document(text, "doc")], config)
    return kept, report


def removed_by(text, config=None):
    """The rule that removed ``text``, or None if it was kept."""
    kept, report = run(text, config)
    if kept:
        return None
    (rule,) = [r for r, c in report.rules.items() if c.documents]
    return rule


# -- normalisation -------------------------------------------------------------------------------


def test_nfc_makes_composed_and_decomposed_equal():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed
    assert normalise(composed) == normalise(decomposed) == composed


def test_nfc_can_be_switched_off():
    assert normalise("cafe\u0301", CleanConfig(nfc=False)) == "cafe\u0301"


def test_control_characters_are_removed_but_newline_and_tab_kept():
    text = "a\x00b\x07c\x1bd\x7fe\x9ff\ufeffg\th\ni"
    assert normalise(text) == "abcdefg\th\ni"
    assert normalise(text, CleanConfig(remove_control=False)) == text


def test_control_removal_runs_before_nfc():
    # deleting the control character puts e next to the accent: the result must still be NFC
    assert normalise("e\x01\u0301") == "\u00e9"


def test_newlines_are_normalised():
    assert normalise("a\r\nb\rc\u2028d\x0ce") == "a\nb\nc\nd\ne"


def test_runs_of_spaces_collapse_inside_lines_but_indentation_is_kept():
    assert normalise("    indented   code  here") == "    indented code here"
    assert normalise("a   b", CleanConfig(collapse_spaces=False)) == "a   b"


def test_unicode_spaces_become_ascii_spaces():
    assert normalise("a\u00a0b\u3000c\u2009d") == "a b c d"


def test_trailing_whitespace_is_stripped_per_line():
    assert normalise("a  \t\nb \nc") == "a\nb\nc"
    assert normalise("a \nb", CleanConfig(strip_trailing=False)) == "a \nb"


@pytest.mark.parametrize(
    "max_blank, expected",
    [(2, "a\n\n\nb"), (1, "a\n\nb"), (0, "a\nb"), (None, "a" + "\n" * 10 + "b")],
)
def test_at_most_max_blank_lines_are_kept(max_blank, expected):
    text = "a" + "\n \n" * 5 + "b"
    assert normalise(text, CleanConfig(max_blank_lines=max_blank)) == expected


def test_leading_blank_lines_and_trailing_whitespace_of_the_document_go():
    assert normalise("\n\n  \n  first\nlast \n\n") == "  first\nlast"


TRICKY = ["\u0301", "\u00a0", "\u2028", "\x00", "\x0c", "\x85", "\ufeff", "\u2000", "\u212b"]
ALPHABET = st.sampled_from([*"ab é\t\n\r", *TRICKY, "  ", "javascript", "...", "#", "- ", "x" * 12])
TEXTS = st.one_of(st.text(), st.lists(ALPHABET, max_size=60).map("".join))


@given(TEXTS)
def test_normalise_is_idempotent(text):
    once = normalise(text)
    assert normalise(once) == once


@given(TEXTS)
def test_clean_text_is_idempotent(text):
    config = CleanConfig(terminal_punctuation_line=True, short_line=True, min_line_words=2)
    for c in (CleanConfig(), config, CleanConfig(max_blank_lines=0, max_word_chars=5)):
        once = clean_text(text, c)
        assert clean_text(once, c) == once


# -- the default config --------------------------------------------------------------------------


def test_default_config_keeps_ordinary_prose_unchanged():
    kept, report = run(PROSE)
    assert kept == [Document(PROSE, "doc")]
    assert report.removed.documents == 0 and report.removed.characters == 0


def test_rule_lists_match_the_config_flags():
    flags = {f.name for f in dataclasses.fields(CleanConfig)}
    assert set(DOCUMENT_RULES) <= flags and set(LINE_RULES) <= flags


# -- document filters: each violation is removed under its rule; switching it off keeps it -----

LONG_WORDS = " ".join(
    w if w in ("the", "of", "and") else w + "ificationalism" for w in PROSE.split()
)
NUMBERS = PROSE + "\n" + " ".join(str(1000 + i) for i in range(150))
SPEAKERS = "\n".join(f"Ham.\n{line}" for line in PROSE_LINES)  # 7 of 16 lines repeat "Ham."
REPEATED_LONG_LINE = PROSE + ("\n" + PROSE_LINES[2]) * 3
SHORT_PARAGRAPHS = "\n\n".join(PROSE_LINES + ["Exeunt."] * 5)  # 4 of 13 paragraphs repeat
# a repeated paragraph repeats its lines, so the line rules see it too (switched off below)
BLOCK = "\n".join(PROSE_LINES[:4])
REPEATED_PARAGRAPH = "\n\n".join([*PROSE_LINES, BLOCK, BLOCK])  # 1 of 10 repeats, 1/4 of chars
NO_LINE_DUPLICATES = {"duplicate_lines": False, "duplicate_line_chars": False}

VIOLATIONS = {
    "lorem_ipsum": (PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", {}),
    "word_count": ("The farmers of the valley planted wheat and barley together.", {}),
    "mean_word_length": (LONG_WORDS, {}),
    "symbol_ratio": (PROSE + "\n" + "#" * 20, {}),
    "bullet_lines": ("\n".join("- " + line for line in PROSE_LINES), {}),
    "ellipsis_lines": (
        "\n".join(line[:-1] + "..." if i % 2 else line for i, line in enumerate(PROSE_LINES)),
        {},
    ),
    "alpha_words": (NUMBERS, {}),
    "stop_words": (NO_STOP_WORDS, {}),
    "duplicate_lines": (SPEAKERS, {}),
    "duplicate_line_chars": (REPEATED_LONG_LINE, {}),
    "duplicate_paragraphs": (SHORT_PARAGRAPHS, {}),
    "duplicate_paragraph_chars": (REPEATED_PARAGRAPH, NO_LINE_DUPLICATES),
}


def test_every_document_rule_has_a_violation_test():
    assert set(VIOLATIONS) == set(DOCUMENT_RULES)


@pytest.mark.parametrize("rule", DOCUMENT_RULES)
def test_document_violating_one_rule_is_removed_under_its_name(rule):
    text, overrides = VIOLATIONS[rule]
    assert removed_by(text, CleanConfig(**overrides)) == rule


@pytest.mark.parametrize("rule", DOCUMENT_RULES)
def test_switching_the_rule_off_keeps_the_document(rule):
    text, overrides = VIOLATIONS[rule]
    assert removed_by(text, CleanConfig(**overrides, **{rule: False})) is None


def test_too_many_words_is_a_word_count_violation():
    assert removed_by(PROSE, CleanConfig(max_words=50)) == "word_count"


def test_removed_document_example_gives_the_measured_value():
    _, report = run(NUMBERS)
    (example,) = report.examples["alpha_words"]
    assert example.source == "doc"
    assert "words with a letter 0.4" in example.detail


def test_symbol_ratio_counts_ellipses_too():
    text = PROSE + "\n" + "… " * 8 + "..." * 8
    assert quality_signals(text).ellipsis_ratio > 0.1
    assert removed_by(text) == "symbol_ratio"


def test_table_rules_are_not_duplicate_lines():
    table = "\n".join(["+------+------+", "| a b  | c d  |"] * 6 + ["+------+------+"])
    signals = quality_signals(PROSE + "\n" + table)
    # the six repeated "| a b | c d |" rows count, the seven "+---+" rules do not
    assert signals.duplicate_line_fraction == pytest.approx(5 / (8 + 13))


def test_stop_word_list_is_configurable_for_other_languages():
    german = (
        "Der Fluss und die Stadt liegen in einem Tal, das seit Jahrhunderten von Bauern "
        "bewohnt wird. Die Bauern pflanzen Weizen und Gerste, und die Händler bringen Salz "
        "und Stoff aus der Stadt in die Dörfer. Im Winter sind die Straßen geschlossen, und "
        "die Dörfer leben von dem, was sie im Herbst gesammelt haben. Heute ist das Tal für "
        "seine Obstgärten bekannt."
    )
    assert removed_by(german) == "stop_words"
    assert removed_by(german, CleanConfig(stop_word_list=("der", "die", "und"))) is None


# -- line filters --------------------------------------------------------------------------------

LINE_VIOLATIONS = {
    "boilerplate_line": ("Please enable JavaScript to view this page.", {}),
    "long_word_line": ("Download it from data:" + "x" * 60, {"max_word_chars": 50}),
    "terminal_punctuation_line": (
        "A line of five words without an ending",
        {"terminal_punctuation_line": True},
    ),
    "short_line": ("Too short.", {"short_line": True}),
}


def test_long_word_line_default_is_c4s_1000_characters():
    text = PROSE + "\n" + "data:" + "x" * 995
    assert clean_text(text) == PROSE + "\n" + "data:" + "x" * 995
    assert clean_text(text + "x") == PROSE


def test_every_line_rule_has_a_violation_test():
    assert set(LINE_VIOLATIONS) == set(LINE_RULES)


@pytest.mark.parametrize("rule", LINE_RULES)
def test_line_violating_one_rule_is_removed_and_counted(rule):
    line, overrides = LINE_VIOLATIONS[rule]
    text = PROSE_LINES[0] + "\n" + line + "\n" + "\n".join(PROSE_LINES[1:])
    kept, report = run(text, CleanConfig(**overrides))
    assert kept == [Document(PROSE, "doc")]
    count = report.rules[rule]
    assert (count.documents, count.lines, count.characters) == (0, 1, len(line))
    assert count.words == len(line.split())
    # the line's newline is counted by normalisation, so the totals balance
    assert report.rules["normalise"].characters == 1
    assert report.examples[rule][0].source == "doc"


@pytest.mark.parametrize("rule", LINE_RULES)
def test_switching_a_line_rule_off_keeps_the_line(rule):
    line, overrides = LINE_VIOLATIONS[rule]
    text = PROSE + "\n" + line
    kept, report = run(text, CleanConfig(**{**overrides, rule: False}))
    assert kept == [Document(text, "doc")]
    assert rule not in report.rules


def test_terminal_punctuation_rule_also_removes_lines_ending_in_an_ellipsis():
    config = CleanConfig(terminal_punctuation_line=True)
    kept, _ = run(PROSE + "\nAnd then the story trails off...", config)
    assert kept[0].text == PROSE


def test_blank_lines_left_by_removed_lines_are_tidied():
    text = PROSE_LINES[0] + "\n\n\nvisit our cookie policy\n\n\n" + PROSE_LINES[1]
    assert clean_text(text) == PROSE_LINES[0] + "\n\n\n" + PROSE_LINES[1]


def test_document_whose_every_line_is_removed_is_counted_as_empty():
    kept, report = run("Please enable JavaScript.\nThis site uses cookies.")
    assert kept == []
    assert report.rules["boilerplate_line"].lines == 2
    assert report.rules["empty"].documents == 1


def test_output_keeps_input_order_and_sources():
    docs = [Document(PROSE, "a"), Document("Lorem ipsum " + PROSE, "b"), Document(PROSE, "c")]
    kept, _ = clean_documents(iter(docs))
    assert [d.source for d in kept] == ["a", "c"]


# -- config --------------------------------------------------------------------------------------


def test_from_dict_rejects_unknown_keys_naming_them():
    with pytest.raises(DataError, match=r"unknown key CleanConfig\.min_wrds"):
        CleanConfig.from_dict({"min_wrds": 3})


def test_from_dict_round_trips_through_to_dict():
    config = CleanConfig(stop_word_list=("le", "la"), min_words=10, short_line=True)
    data = config.to_dict()
    assert data["stop_word_list"] == ["le", "la"]
    assert CleanConfig.from_dict(data) == config


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"min_words": -1}, "min_words"),
        ({"max_duplicate_line_fraction": 1.5}, "max_duplicate_line_fraction"),
        ({"stop_words": "yes"}, "stop_words"),
        ({"stop_word_list": "the"}, "stop_word_list"),
        ({"min_words": 10, "max_words": 5}, "min_words"),
        ({"max_blank_lines": -2}, "max_blank_lines"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(DataError, match=rf"CleanConfig\.{field}"):
        CleanConfig(**overrides)
