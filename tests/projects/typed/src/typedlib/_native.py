# A module with a hand-written stub (_native.pyi): the stub wins and ships as written.
def fast_hash(data):
    return sum(data) % 65521
