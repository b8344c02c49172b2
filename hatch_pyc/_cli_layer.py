"""``hatch-pyc layer``: an OCI image layer of compiled wheels, optionally a whole image."""

from __future__ import annotations

import argparse

from hatch_pyc._cli_shared import EXIT_OK, add_exclude, add_on_error_and_workers, add_optimize, cache_options, say, show
from hatch_pyc._options import INVALIDATION_MODES, PycOptions


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``layer``."""
    lay = sub.add_parser(
        "layer",
        help="write an OCI image layer of compiled wheels (no container engine needed)",
        description="Install wheels under --prefix in a staging root, compile them for --python, and write one "
        "reproducible OCI layer (tar+gzip). Optionally write a whole image (--oci-layout) or load it (--docker).",
    )
    lay.add_argument("wheels", nargs="+", metavar="WHEEL")
    lay.add_argument("--python", required=True, metavar="PY", help="target CPython (the image's interpreter version)")
    lay.add_argument(
        "--prefix",
        required=True,
        metavar="DIR",
        help="site-packages inside the image, e.g. "
        "/usr/local/lib/python3.12/site-packages; scripts go to the matching bin/",
    )
    lay.add_argument("-o", "--output", required=True, metavar="FILE", help="the layer file (.tar.gz)")
    add_optimize(lay, "optimisation level; repeat for several (default 0)", repeatable=True)
    lay.add_argument("--strip", action="store_true", help="sourceless: mod.pyc only, one level")
    add_exclude(lay, "the install root (site-packages)")
    lay.add_argument(
        "--invalidation-mode",
        choices=INVALIDATION_MODES,
        help="pyc header mode (default: timestamp "
        "pycs matching the layer's fixed file times, or unchecked-hash with --strip)",
    )
    add_on_error_and_workers(lay)
    lay.add_argument(
        "--scripts-dir",
        metavar="DIR",
        help="where console scripts go in the image (default: the bin/ beside lib/ of --prefix)",
    )
    lay.add_argument(
        "--interpreter-path",
        metavar="PATH",
        help="the image's interpreter, for script shebangs (default: <bin>/pythonX.Y)",
    )
    lay.add_argument(
        "--oci-layout",
        metavar="PATH",
        help="also write a whole image: the base's layers plus this one, "
        "as an OCI layout that is also a docker archive (a directory, or a .tar file)",
    )
    lay.add_argument(
        "--base",
        metavar="BASE",
        help="the base image for --oci-layout/--docker: an OCI layout (directory or .tar) or a `docker save` archive",
    )
    lay.add_argument("--tag", metavar="NAME:TAG", help="the image name written into the layout")
    lay.add_argument(
        "--docker",
        metavar="NAME:TAG",
        help="load the image into the Docker engine (needs the `docker` extra) under this name",
    )
    lay.add_argument("-q", "--quiet", action="store_true", help="print the digests only")
    lay.set_defaults(func=run_layer)


def run_layer(args: argparse.Namespace) -> int:
    """Write the layer (and the image, when asked); print its digests.

    The base is read and checked before anything is written, and the outputs are renamed into
    place only when every step has succeeded: a run that fails leaves neither the layer nor the
    layout (nor a directory made for them).
    """
    import tempfile
    from pathlib import Path

    from hatch_pyc._layer import write_layer
    from hatch_pyc._oci import StagedOutputs, write_image
    from hatch_pyc._oci_base import read_base
    from hatch_pyc._targets import find_interpreter

    image = bool(args.oci_layout or args.docker)
    _check_outputs(args, image)
    interp = find_interpreter(args.python)
    options = PycOptions(
        levels=tuple(args.optimize or (0,)),
        strip=args.strip,
        exclude=tuple(args.exclude or ()),
        invalidation=args.invalidation_mode,
        on_error=args.on_error,
        workers=args.workers,
        **cache_options(args),
    )
    outputs = StagedOutputs()
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-base-") as scratch:
        base = read_base(args.base, Path(scratch)) if args.base else None
        try:
            layer = write_layer(
                args.wheels,
                outputs.path(args.output),
                interp,
                prefix=args.prefix,
                options=options,
                scripts=args.scripts_dir,
                python=args.interpreter_path,
            )
            written = None
            if image:
                written = write_image(
                    layer,
                    base=base,
                    layout=args.oci_layout,
                    tag=args.tag or args.docker,
                    created_by=f"hatch-pyc layer --prefix {args.prefix}",
                    docker=args.docker,
                    outputs=outputs,
                )
            outputs.commit()
        except BaseException:
            outputs.discard()
            raise
    show(f"layer    {args.output}", lines=False)
    show(f"digest   {layer.digest}", lines=False)
    show(f"diff_id  {layer.diff_id}", lines=False)
    show(f"size     {layer.size}", lines=False)
    if written:
        show(f"image    {written.config_digest}" + (f" ({written.layout})" if written.layout else ""), lines=False)
    if not args.quiet:
        pycs = layer.compile.pyc_written + layer.compile.pyc_linked
        say(
            f"hatch-pyc: {layer.entries} entries, {len(layer.compile.compiled)} modules, {pycs} pyc "
            f"({layer.compile.pyc_linked} hard links) for CPython {interp.minor}"
        )
    return EXIT_OK


def _check_outputs(args: argparse.Namespace, image: bool) -> None:
    """Refuse outputs that cannot be written, and a --base nothing would use, before any work."""
    import os

    from hatch_pyc._errors import InvalidOptions

    if args.base and not image:
        raise InvalidOptions("--base is the base of --oci-layout or --docker; give one of them, or drop --base")
    from hatch_pyc._overlap import refuse_outputs_over_inputs

    refuse_outputs_over_inputs(
        [*(("WHEEL", wheel) for wheel in args.wheels), ("--base", args.base)],
        [("-o", args.output), ("--oci-layout", args.oci_layout)],
    )
    if os.path.isdir(args.output):
        raise InvalidOptions(f"-o {args.output}: a directory; give the layer file's name")
    if args.oci_layout:
        if os.path.abspath(args.oci_layout) == os.path.abspath(args.output):
            raise InvalidOptions(f"--oci-layout {args.oci_layout}: the same path as -o; give each its own")
        is_tar = args.oci_layout.endswith(".tar")
        if os.path.exists(args.oci_layout) and os.path.isdir(args.oci_layout) == is_tar:
            kind = "a directory" if is_tar else "a file"
            raise InvalidOptions(
                f"--oci-layout {args.oci_layout}: {kind}, but the name asks for "
                + ("a tar (it ends in .tar)" if is_tar else "a directory (it does not end in .tar)")
            )
        from pathlib import Path

        from hatch_pyc._oci import check_outputs

        check_outputs([Path(args.output), Path(args.oci_layout)])
