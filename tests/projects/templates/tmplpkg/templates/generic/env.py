# The environment script of a generated project: the user edits it.
from tmplpkg import TEMPLATES

target_metadata = None
print("env.py ran from", TEMPLATES.name)
