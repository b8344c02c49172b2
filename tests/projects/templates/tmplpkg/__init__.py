"""A package that copies a template directory into the user's project, as `alembic init` does."""

import pathlib
import shutil

TEMPLATES = pathlib.Path(__file__).parent / "templates"


def init(dest: str, template: str = "generic") -> None:
    pathlib.Path(dest).mkdir()
    for path in (TEMPLATES / template).iterdir():
        if path.is_file():  # pip's __pycache__ is not part of the template
            shutil.copy(path, dest)
