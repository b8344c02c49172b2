# 03: install with uv, compile with hatch-pyc.
#
# uv installs without compiling by default (`--no-compile-bytecode`, said here out loud); its
# `--compile-bytecode` runs compileall with the image's Python, which hatch-pyc replaces with pycs that
# are byte-identical from build to build. The sources are kept (add --strip for a sourceless venv as in 02).
# uv and hatch-pyc live in the build stage only.
#
# Build context (see README.md): wheels/ with the app, its dependencies, hatch-pyc and its dependencies,
# and uv's wheel for the build platform (`pip download --only-binary=:all: --no-deps -d wheels uv`).
#   docker build -f 03-uv-then-hatch-pyc.Dockerfile --build-arg APP=myapp -t myapp:uv .
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ARG APP=demo_app
ARG HATCH_PYC_ARGS=""
COPY wheels/ /wheels/
# HATCH_PYC_NO_CACHE: no compile cache in the layer (as pip's --no-cache-dir); to keep one between builds,
# mount it instead (docs/containers.md: keeping the compile cache between builds).
RUN export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore HATCH_PYC_NO_CACHE=1 \
 && python3 -m venv /opt/tools \
 && /opt/tools/bin/pip install --no-index --find-links /wheels --no-compile uv hatch-pyc \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/tools/bin/uv pip install --python /opt/venv/bin/python --offline --no-cache \
      --no-index --find-links /wheels --no-compile-bytecode ${APP} \
 && /opt/tools/bin/hatch-pyc compile ${HATCH_PYC_ARGS} /opt/venv

# Only the venv is shipped. COPY --from keeps the files' mtimes, which the (default) timestamp pycs
# record; a step that rewrites mtimes needs --invalidation-mode checked-hash instead.
FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "demo_app"]
