from importlib import resources

DATA = resources.files(__name__).joinpath("data.txt").read_text()
