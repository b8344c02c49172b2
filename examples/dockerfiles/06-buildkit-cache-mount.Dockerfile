# 06: 01, with the compile cache kept between builds in a BuildKit cache mount.
#
# Every build of an image compiles its venv again: each RUN starts from an empty ~/.cache. With the
# compile cache in a cache mount, a rebuild after one dependency changed (a new pin, one more package)
# compiles only that dependency; every other module's code comes from the cache, byte for byte what
# compiling gives. The mount is BuildKit's: it is kept by the builder between builds and never ends up in
# a layer, so the image is the same as 01's.
#
# Needs BuildKit (docker buildx build, or docker build on Docker 23+); Docker 20.10+'s built-in Dockerfile
# frontend reads RUN --mount, so no `# syntax=` line is needed and the build stays offline:
#   docker buildx build -f 06-buildkit-cache-mount.Dockerfile --build-arg APP=myapp --network none -t myapp:pycs .
# hatch-pyc's summary line in the build log says how many modules came from the cache
# ("compiled 812 of 812 sources ...; 790 of 812 from the compile cache").
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

# What to install from wheels/: a requirement or several ("myapp gunicorn"), or a requirements file.
ARG APP=demo_app
# hatch-pyc compile options, e.g. "-O 0 -O 2" for pycs of both `python` and `python -OO`.
ARG HATCH_PYC_ARGS=""

# One RUN, as in 01: the hatch-pyc venv is created and deleted in the same layer. The wheels are bind-mounted
# rather than copied, so they are in no layer either.
#   mode=0700: hatch-pyc uses no cache directory other users may write to (it would say so and compile
#     everything); the mount is made private to root, who runs the build. Two builds at once may share it:
#     the cache is safe under concurrent runs.
RUN --mount=type=bind,source=wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/hatch-pyc,mode=0700 \
    export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1 \
 && python3 -m venv /tmp/hatch-pyc \
 && /tmp/hatch-pyc/bin/pip install --no-index --find-links /wheels --no-compile hatch-pyc \
 && python3 -m venv --without-pip /opt/venv \
 && /tmp/hatch-pyc/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheels --no-compile ${APP} \
 && /tmp/hatch-pyc/bin/hatch-pyc compile ${HATCH_PYC_ARGS} /opt/venv \
 && rm -rf /tmp/hatch-pyc

ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "demo_app"]
