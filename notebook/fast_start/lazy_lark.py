"""Build a Lark parser the first time it is used, not when it is declared.

install.py puts this module into the rfc3987_syntax package; see there for why.
"""
import threading

import lark


class LazyLark:
    """Takes lark.Lark's arguments and builds the real parser on first use, once, even
    when threads race for it; every call and attribute then goes to that parser."""

    def __init__(self, *args, **kwargs):
        self._args = args
        self._kwargs = kwargs
        self._parser = None
        self._lock = threading.Lock()

    def _built(self):
        if self._parser is None:
            with self._lock:
                if self._parser is None:
                    self._parser = lark.Lark(*self._args, **self._kwargs)
        return self._parser

    def parse(self, *args, **kwargs):
        return self._built().parse(*args, **kwargs)

    def __getattr__(self, name):
        # Only reached for what this class does not define: lex, options, rules...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._built(), name)
