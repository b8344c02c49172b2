import sys


def main() -> None:
    from srcpkg import answer

    print(f"hello {answer()} from {__file__.rsplit('/', 1)[-1]} on {sys.version_info[0]}.{sys.version_info[1]}")
