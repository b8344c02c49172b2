# 02: sourceless app in a two-stage build.
#
# A build stage makes the venv, installs the app and strips it with `hatch-pyc compile --strip`: every
# mod.py becomes mod.pyc beside it (no __pycache__, no sources). The final stage copies only the venv,
# so neither hatch-pyc, pip's caches nor the wheels end up in the image.
#
# What a sourceless module loses: tracebacks show file and line but not the source line,
# inspect.getsource() fails, and code that reads its own .py breaks. Keep such modules as source with
# --exclude (HATCH_PYC_ARGS="--exclude 'myapp/templates/'"). A sourceless pyc is used whatever -O the
# interpreter runs with: the level you compile at (-O 2 drops asserts and docstrings) is the level you run.
#
# Build context (see README.md): wheels/ with the app, its dependencies, hatch-pyc and its dependencies.
#   docker build -f 02-sourceless-multistage.Dockerfile --build-arg APP=myapp -t myapp:sourceless .
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ARG APP=demo_app
ARG OPTIMIZE=0
ARG HATCH_PYC_ARGS=""
COPY wheels/ /wheels/
# --without-pip: the runtime venv gets no pip; the tool venv's pip installs into it (pip --python).
# PYTHONDONTWRITEBYTECODE: no stray pycs from the Pythons run during the build.
# HATCH_PYC_NO_CACHE: no compile cache in the layer (as pip's --no-cache-dir); to keep one between builds,
# mount it instead (docs/containers.md: keeping the compile cache between builds).
RUN export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore HATCH_PYC_NO_CACHE=1 \
 && python3 -m venv /opt/hatch-pyc \
 && /opt/hatch-pyc/bin/pip install --no-index --find-links /wheels --no-compile hatch-pyc \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/hatch-pyc/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheels --no-compile ${APP} \
 && /opt/hatch-pyc/bin/hatch-pyc compile --strip -O ${OPTIMIZE} ${HATCH_PYC_ARGS} /opt/venv

# The final stage starts afresh from the base image: only what is copied in is shipped. The venv's
# bin/python is a link to the base's interpreter, so both stages must use the same PYTHON_IMAGE.
FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "demo_app"]
