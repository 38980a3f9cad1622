"""Make the user's server start sooner: a build step, run as root in notebook/Dockerfile.

jupyter_server imports jupyter_events, which imports jsonschema, whose format checkers
import rfc3987_syntax; and that module builds about forty Earley parsers from its grammar
as it is imported: one to two seconds of CPU on a small host, about half of the server's
whole start (bench/, P11), though nothing uses them until something validates an "iri" format. This step makes
each parser get built the first time it is used instead: the module's parser objects
become stand-ins (LazyLark, in lazy_lark.py) that build the real one on first use, and
its functions and their answers stay the same.

It is written for one file: when the package is not that file (another version), the
build stops here, so that someone looks again rather than patching what it does not know.
"""
import compileall
import hashlib
import shutil
import subprocess
import sys
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

PACKAGE = "rfc3987_syntax"
DISTRIBUTION = "rfc3987-syntax"
VERSION = "1.1.0"  # pinned in notebook/requirements.txt
HELPERS_SHA256 = "775d776cfc5aa23f93147cca7a7a0c362452e4d85537c2453aaab5478557ce29"
ORIGINAL_IMPORT = "from lark import Lark, ParseTree, exceptions\n"
LAZY_IMPORT = "from lark import ParseTree, exceptions\nfrom rfc3987_syntax._lazy_lark import LazyLark as Lark\n"

# Run in a fresh interpreter after the change: nothing is built on import, and the
# answers (directly, and through jsonschema's "iri" format check) are still right.
CHECK = """
import jsonschema
from rfc3987_syntax import syntax_helpers as h
from rfc3987_syntax._lazy_lark import LazyLark
assert isinstance(h.syntax_parser, LazyLark) and h.syntax_parser._parser is None
assert h.is_valid_syntax("iri", "https://example.org/a/b?c=d#e")
assert not h.is_valid_syntax("iri", "no scheme here")
assert h.is_valid_syntax_iri_reference("../relative/path")
assert h.is_valid_syntax_ipv4address("192.0.2.1") and not h.is_valid_syntax_ipv4address("192.0.2")
checker = jsonschema.Draft7Validator.FORMAT_CHECKER
assert checker.conforms("https://example.org/", "iri") and not checker.conforms("not an iri", "iri")
"""


def main() -> None:
    package = Path(find_spec(PACKAGE).submodule_search_locations[0])  # found, not imported
    helpers = package / "syntax_helpers.py"
    text = helpers.read_text(encoding="utf-8")
    found = (version(DISTRIBUTION), hashlib.sha256(text.encode("utf-8")).hexdigest())
    if found != (VERSION, HELPERS_SHA256) or text.count(ORIGINAL_IMPORT) != 1:
        sys.exit(f"notebook/fast_start: {DISTRIBUTION} {found[0]} ({helpers}) is not the "
                 f"{VERSION} this step was written for: check that it still builds its parsers "
                 "on import, then update install.py (or drop this step).")
    shutil.copyfile(Path(__file__).with_name("lazy_lark.py"), package / "_lazy_lark.py")
    helpers.write_text(text.replace(ORIGINAL_IMPORT, LAZY_IMPORT), encoding="utf-8")
    # site-packages belongs to root: without fresh bytecode here, every start as jovyan
    # would compile the changed module again in memory.
    if not compileall.compile_dir(package, quiet=1, force=True):
        sys.exit(f"notebook/fast_start: compiling {package} failed")
    subprocess.run([sys.executable, "-c", CHECK], check=True)
    print(f"notebook/fast_start: {PACKAGE} now builds its parsers on first use")


if __name__ == "__main__":
    main()
