"""The suite's own layout: pytest imports every test file by its basename (rootdir-relative
"rootdir" import mode, no packages), so two files with one name in different folders stop
collection of the whole suite with "import file mismatch"."""
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_files_share_a_basename():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    shared = sorted(name for name, count in names.items() if count > 1)
    assert shared == [], f"rename one of each: {shared}"
