# 01: compile in place, keep the sources.
#
# The smallest change to a usual single-stage image: install the app into a venv without letting the
# installer compile, then let hatch-pyc compile the venv with the image's own interpreter. The sources
# stay; the pycs go to __pycache__ where the import system looks for them, so tracebacks, inspect and
# code that reads its own .py keep working. Every container then starts from ready pycs instead of
# compiling (and writing into its own writable layer) on each start.
#
# Build context (see README.md): wheels/ with the app, its dependencies, hatch-pyc and its dependencies.
#   docker build -f 01-compile-in-place.Dockerfile --build-arg APP=myapp -t myapp:pycs .
# The build needs no network: add --network none.
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

# What to install from wheels/: a requirement or several ("myapp gunicorn"), or a requirements file.
ARG APP=demo_app
# hatch-pyc compile options, e.g. "-O 0 -O 2" for pycs of both `python` and `python -OO`.
ARG HATCH_PYC_ARGS=""

# This COPY is a layer of its own and stays in the image (a few MB of wheels; a later `rm -rf /wheels`
# would not give them back). 02 and 03 avoid it with a build stage; with BuildKit you can instead use
# `RUN --mount=type=bind,source=wheels,target=/wheels` in the RUN below and drop this line.
COPY wheels/ /wheels/

# One RUN, on purpose: the hatch-pyc venv is created and deleted in the same layer, so it never reaches
# the image. A deletion in a *later* layer only hides files: the layer holding them is still shipped
# and pulled, and the image does not get smaller.
#   PYTHONDONTWRITEBYTECODE: the Pythons run here (venv, pip) would otherwise leave pycs of whatever
#     stdlib modules they happen to import in this layer; 05 compiles the whole stdlib instead.
#   --without-pip: the app's venv gets no pip; the hatch-pyc venv's pip installs into it (pip --python,
#     pip >= 22.3). Drop --without-pip and use /opt/venv/bin/pip if you want pip at run time.
#   pip --no-compile: pip would otherwise compile with its own compileall pass; hatch-pyc does it.
# HATCH_PYC_NO_CACHE: no compile cache in the layer (as pip's --no-cache-dir); to keep one between builds,
# mount it instead (docs/containers.md: keeping the compile cache between builds).
RUN export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore HATCH_PYC_NO_CACHE=1 \
 && python3 -m venv /tmp/hatch-pyc \
 && /tmp/hatch-pyc/bin/pip install --no-index --find-links /wheels --no-compile hatch-pyc \
 && python3 -m venv --without-pip /opt/venv \
 && /tmp/hatch-pyc/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheels --no-compile ${APP} \
 && /tmp/hatch-pyc/bin/hatch-pyc compile ${HATCH_PYC_ARGS} /opt/venv \
 && rm -rf /tmp/hatch-pyc /root/.cache

ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "demo_app"]
