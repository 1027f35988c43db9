"""Visible text of HTML: what is dropped, where lines break, how whitespace is kept."""

from __future__ import annotations

import pytest

from core.html_text import html_to_text, normalise_whitespace


@pytest.mark.parametrize("html, text", [
    ('shown <span style="DISPLAY : None">gone <b>also gone</b></span> kept', "shown kept"),
    ('a<span style="visibility:hidden">x</span>b', "ab"),
    ("a<p hidden>x</p>b", "ab"),
    ('<input type="HIDDEN" value="x">after', "after"),
    ('<p>one</p><div style="font-size:0px">zero</div><div style="font-size:0.5px">small</div>',
     "one\nsmall"),
    ("<head><title>T</title></head><body>x<script>s</script><style>c</style>"
     "<noscript>n</noscript><iframe>i</iframe><svg><text>v</text></svg>y</body>", "xy"),
    ("a<!-- note -->b", "ab"),
])
def test_hidden_dropped_and_commented_text_is_not_read(html, text):
    assert html_to_text(html) == text


def test_a_hidden_block_leaves_no_line_break():
    assert html_to_text('a<div style="display:none"><p>x</p><p>y</p></div>b') == "ab"


def test_ruby_annotations_are_left_out():
    assert html_to_text("<ruby>漢<rp>(</rp><rt>kan</rt><rp>)</rp>字</ruby>") == "漢字"


def test_html_to_text_keeps_block_structure():
    html = "<div>one</div><div>two<br>three</div><ul><li>a</li><li>b</li></ul>"
    assert html_to_text(html) == "one\ntwo\nthree\na\nb"


def test_blocks_and_cells_end_lines_in_broken_markup():
    assert html_to_text("<p>one<p>two<div>three") == "one\ntwo\nthree"
    assert html_to_text("<ul><li>one<li>two</ul>after") == "one\ntwo\n\nafter"
    assert html_to_text("<table><tr><th>h</th><td>one</td><td>two</td></tr></table>") == (
        "h\none\ntwo")


def test_whitespace_between_tags_is_one_space_or_one_line_break_except_in_pre():
    assert html_to_text("<b>a</b>   <b>b</b>") == "a b"
    assert html_to_text("<span>a</span>\n\n<span>b</span>") == "a\nb"
    assert html_to_text("<pre><b>a</b>\n\n<b>b</b></pre>") == "a\n\nb"


def test_entities_byte_order_mark_and_empty_input():
    assert html_to_text("a&nbsp;&nbsp;b &amp; c") == "a b & c"
    assert html_to_text("\ufeff<p>x</p>") == "x"
    assert html_to_text("") == ""


def test_normalise_whitespace():
    assert normalise_whitespace(" a \t\u00a0b \r\n\n\n\n  c\x0b ") == "a b\n\nc"
