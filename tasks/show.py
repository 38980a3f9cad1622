"""Text from outside on the operator's terminal.

Names this tool did not choose (file names and metadata read from an archive, volume and
container names and labels, what the engine or a container says) can hold characters that
act on a terminal instead of being shown: ESC starts sequences that retitle the window,
clear the screen or rewrite what was printed, CR returns to the line's start, bidi
overrides reorder what follows. Every such text goes through `shown` on its way to a
message, and only that text: the message around it keeps its own newlines.
"""

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text) -> str:
    """`text` (anything; str() of it) as it may be printed: every character that is not
    printable becomes a Python-style escape, as `repr` writes it. That is the C0 and C1
    controls (ESC `\\x1b`, CR `\\r`, BEL `\\x07`...), DEL, the bidi embeddings, overrides
    and isolates (U+202A-202E, U+2066-2069) and other format characters, and separators
    other than the plain space. A byte of a name that is not UTF-8 (a lone surrogate, as
    `surrogateescape` decodes it) shows as that byte, `\\xff`. A backslash is doubled, so
    what is shown reads back one way."""
    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
