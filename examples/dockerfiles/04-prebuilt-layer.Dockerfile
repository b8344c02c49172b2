# 04: add a layer that hatch-pyc wrote outside of Docker.
#
# `hatch-pyc layer` installs wheels under an image path, compiles them for the image's CPython (found on
# the build machine: pyenv, uv or PATH) and writes one reproducible tar.gz: the same wheels give the same
# bytes, so the same layer digest, whatever machine built it. ADD unpacks a local tar.gz into the image,
# keeping its file times (which its timestamp pycs record). Neither pip nor hatch-pyc runs in `docker build`.
#
# --prefix must be the site-packages of the interpreter that will run the app, for the image's Python
# version (the layer refuses a prefix of another version than --python). This file uses a venv, which
# works on any image that has `python3 -m venv` (official python images, Debian's python3):
#   hatch-pyc layer --python 3.12 --prefix /opt/venv/lib/python3.12/site-packages -o app-layer.tar.gz app-wheels/*.whl
#   docker build -f 04-prebuilt-layer.Dockerfile -t myapp:layer .
# On an official python image you can also skip the venv: build the layer with
#   --prefix /usr/local/lib/python3.12/site-packages   and delete the RUN line below.
# `hatch-pyc layer` installs exactly the wheels it is given (no resolver): pass the app and every dependency
# (`pip wheel -w app-wheels /path/to/myapp` makes that set).
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

# An empty venv for the layer to land in: only its bin/python links and pyvenv.cfg.
RUN PYTHONDONTWRITEBYTECODE=1 python3 -m venv --without-pip /opt/venv

# Unpacked as it is: owner root, modes and times as hatch-pyc wrote them; sources with their __pycache__
# pycs, or mod.pyc alone for a layer written with --strip.
ADD app-layer.tar.gz /

ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "demo_app"]
