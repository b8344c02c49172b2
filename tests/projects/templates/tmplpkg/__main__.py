import sys

from tmplpkg import init

init(sys.argv[1])
print(f"tmplpkg: {sys.argv[1]} created from the generic template")
