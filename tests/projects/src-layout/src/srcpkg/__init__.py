"""srcpkg: a src-layout project built sourceless."""

__version__ = "1.2.0"


def answer() -> int:
    assert False, "asserts are stripped at optimize = 1"
    return 42
