import pytest

from cube_lsp.documents import (
    Document,
    code_points_from_units,
    units_from_code_points,
)


def doc(text: str) -> Document:
    return Document("file:///t.py", "python", 1, text)


def test_offsets_of_lines_and_clamped_characters():
    d = doc("ab\ncde\n\nf")
    assert d.offset_at(0, 0) == 0
    assert d.offset_at(1, 2) == 5
    assert d.offset_at(1, 99) == 6  # past the end of the line: clamped to its end
    assert d.offset_at(3, 1) == 9
    assert d.offset_at(4, 0) is None  # past the last line
    assert d.offset_at(-1, 0) is None


@pytest.mark.parametrize(
    ("line", "units", "encoding", "expected"),
    [
        ("a😀b", 3, "utf-16", 2),  # the emoji is two UTF-16 units
        ("a😀b", 2, "utf-32", 2),
        ("aé😀b", 7, "utf-8", 3),  # 1 + 2 + 4 bytes
        ("a😀b", 99, "utf-16", 3),
    ],
)
def test_code_units_to_code_points(line, units, encoding, expected):
    assert code_points_from_units(line, units, encoding) == expected


def test_units_round_trip():
    assert units_from_code_points("a😀", "utf-16") == 3
    assert units_from_code_points("a😀", "utf-8") == 5
    assert units_from_code_points("a😀", "utf-32") == 2


def test_incremental_changes_keep_line_table_consistent():
    d = doc("line0\nline1\nline2\nline3\n")
    assert d.offset_at(3, 0) == 18  # fills the line table past the edit
    d.apply_change("X\nY", (1, 2), (2, 1))  # replace "ne1\nl" with "X\nY"
    assert d.text == "line0\nliX\nYine2\nline3\n"
    assert d.offset_at(3, 0) == d.text.index("line3")
    assert d.line_text(2) == "Yine2"
    d.apply_change("", (0, 0), (4, 0))
    assert d.text == ""
    assert d.offset_at(0, 0) == 0


def test_change_past_the_end_is_clamped_and_full_change_replaces():
    d = doc("abc")
    d.apply_change("!", (5, 0), (9, 9))
    assert d.text == "abc!"
    d.apply_change("new")
    assert d.text == "new"


def test_utf16_edit_after_astral_character():
    d = doc("x = '😀'\n")
    d.apply_change("!", (0, 8), (0, 8))  # 'x = ' (4) + quote (1) + emoji (2 units) + quote (1)
    assert d.text == "x = '😀'!\n"


def test_position_at_is_inverse_of_offset_at():
    d = doc("a😀\nbc\n")
    for line, char in [(0, 0), (0, 1), (0, 3), (1, 2), (2, 0)]:
        assert d.position_at(d.offset_at(line, char)) == (line, char)


def test_size_and_binary_flags():
    assert doc("\x00\x01binary").binary
    assert not doc("text").binary
    big = doc("x" * 4_000_001)
    assert big.too_large
    assert big.text == ""  # not kept: memory stays bounded
    big.apply_change("y", (0, 0), (0, 0))
    assert big.too_large
    big.apply_change("small again")
    assert not big.too_large
    assert big.text == "small again"
