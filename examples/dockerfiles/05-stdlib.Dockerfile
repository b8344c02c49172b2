# 05: precompile the standard library too.
#
# The official python images delete every .pyc of the standard library to save space, so each new
# container compiles encodings, os, re, json, ... again on its first imports, and writes the pycs into
# its own writable layer, where the next container does not find them. `hatch-pyc compile --stdlib`
# compiles the stdlib of the venv's interpreter (the image's python) along with the venv itself:
# a few MB more in the image, and less start-up time in every container.
#
# Do not add --strip to this compile: it would also delete the stdlib's sources, which belong to the
# base image's layers; deleting them here only hides them. For a sourceless app, run
# `hatch-pyc compile --strip /opt/venv` and `hatch-pyc compile --python /opt/venv/bin/python --stdlib`.
#
# Build context (see README.md): wheels/ with the app, its dependencies, hatch-pyc and its dependencies.
#   docker build -f 05-stdlib.Dockerfile --build-arg APP=myapp -t myapp:stdlib .
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ARG APP=demo_app
ARG HATCH_PYC_ARGS=""

# Stays in the image as a layer of its own: see 01 for the ways around it.
COPY wheels/ /wheels/

# Single stage: the stdlib pycs are written where the base image keeps its stdlib
# (/usr/local/lib/python3.X on official images, /usr/lib/python3.X on Debian's). They are new files, so
# this layer only adds them. Everything removed (the hatch-pyc venv) is removed in this same RUN: a
# deletion in a later layer would not make the image any smaller.
# HATCH_PYC_NO_CACHE: no compile cache in the layer (as pip's --no-cache-dir); to keep one between builds,
# mount it instead (docs/containers.md: keeping the compile cache between builds).
RUN export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore HATCH_PYC_NO_CACHE=1 \
 && python3 -m venv /tmp/hatch-pyc \
 && /tmp/hatch-pyc/bin/pip install --no-index --find-links /wheels --no-compile hatch-pyc \
 && python3 -m venv --without-pip /opt/venv \
 && /tmp/hatch-pyc/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheels --no-compile ${APP} \
 && /tmp/hatch-pyc/bin/hatch-pyc compile --stdlib ${HATCH_PYC_ARGS} /opt/venv \
 && rm -rf /tmp/hatch-pyc /root/.cache

ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "demo_app"]
