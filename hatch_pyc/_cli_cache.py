"""``hatch-pyc cache``: where the compile cache is, what it holds, and how to shrink or empty it."""

from __future__ import annotations

import argparse
import re

from hatch_pyc._cli_shared import EXIT_OK, show

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _size(text: str) -> int:
    """An argparse type: bytes, or a number with K, M, G or T (binary: 1K = 1024 bytes)."""
    match = re.fullmatch(r"\s*(\d{1,20}(?:\.\d{1,20})?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 500M or 2G)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])  # at most 1e20 TiB: a float, never an overflow


def _human(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} bytes"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``cache``."""
    cache = sub.add_parser(
        "cache",
        help="the compile cache: where it is, its size and hit rate; prune or clear it",
        description="Every command that compiles looks each module's code up in the compile cache first, by a key of "
        "everything that decides its bytes, and compiles only what it does not find. With no action, say where the "
        "cache is, how big, and how often runs found code in it.",
    )
    cache.add_argument("action", nargs="?", choices=("info", "prune", "clear"), default="info")
    cache.add_argument(
        "--cache-dir", metavar="DIR", help="the cache (default: $HATCH_PYC_CACHE_DIR, else ~/.cache/hatch-pyc)"
    )
    cache.add_argument(
        "--max-size",
        type=_size,
        metavar="SIZE",
        help="prune: remove the least recently used code until the cache holds at most SIZE (default: its bound, "
        "$HATCH_PYC_CACHE_MAX_BYTES or 2G)",
    )
    cache.add_argument("--json", action="store_true", help="info: print JSON")
    cache.set_defaults(func=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    """Show, prune or clear the cache."""
    import json

    from hatch_pyc._cache import cache_info, clear_cache, prune_cache

    if args.action == "prune":
        removed, freed = prune_cache(args.cache_dir, args.max_size)
        show(f"removed {removed} entries, {_human(freed)}")
    elif args.action == "clear":
        removed, freed = clear_cache(args.cache_dir)
        show(f"removed {removed} entries, {_human(freed)}")
    info = cache_info(args.cache_dir)
    if args.action != "info":
        return EXIT_OK
    if args.json:
        show(
            json.dumps(
                {
                    "directory": str(info.directory),
                    "entries": info.entries,
                    "bytes": info.bytes,
                    "max_bytes": info.max_bytes,
                    "hits": info.hits,
                    "misses": info.misses,
                    "hit_rate": info.hit_rate,
                },
                indent=2,
            )
        )
        return EXIT_OK
    rate = "no lookups yet" if info.hit_rate is None else f"{info.hit_rate:.1%} of {info.hits + info.misses} lookups"
    show(f"directory: {info.directory}")
    show(f"entries:   {info.entries}")
    show(f"size:      {_human(info.bytes)} of at most {_human(info.max_bytes)}")
    show(f"hits:      {rate}")
    return EXIT_OK
