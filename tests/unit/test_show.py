"""tasks.show: text from outside reaches the terminal with nothing in it that acts on it."""
import pytest
from hypothesis import given, strategies as st

from tasks.show import shown


@pytest.mark.parametrize("text, expected", [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # retitles the terminal window
    ("\x1b[2J", "\\x1b[2J"),  # clears the screen
    ("ok\rforged", "ok\\rforged"),  # overwrites the start of the line
    ("new\nline\ttab", "new\\nline\\ttab"),
    ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),  # DEL, C1 NEL and CSI
    ("abc\u202etxt.exe", "abc\\u202etxt.exe"),  # right-to-left override
    ("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069",
     "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("bytes-\udcff\udcfe", "bytes-\\xff\\xfe"),  # a name that is not UTF-8, as its bytes
    ("a\\x1b", "a\\\\x1b"),  # a literal backslash cannot pass for an escape
])
def test_control_and_format_characters_are_escaped(text, expected):
    assert shown(text) == expected


@pytest.mark.parametrize("text", ["alice", "with space.txt", "caf\u00e9 \u65e5\u672c \U0001F389.md",
                                  "$(id)", "a;b", "", "-rf"])
def test_printable_text_is_shown_as_it_is(text):
    assert shown(text) == text


def test_anything_is_shown_through_str():
    assert shown(None) == "None" and shown(42) == "42"


@given(st.text(st.characters(codec="utf-8") | st.sampled_from("\x1b\x9b\r\u202e\udcff\\")))
def test_what_is_shown_holds_no_control_and_reads_back_as_the_text(text):
    out = shown(text)
    assert out.isprintable()
    decoded = out.encode("ascii", "backslashreplace").decode("unicode_escape")
    expected = "".join(chr(ord(c) - 0xDC00) if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)
    assert decoded == expected
