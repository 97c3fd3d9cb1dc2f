"""`beam-hub` command line. Thin: each subcommand calls the library.

beam-hub resolve HANDLE              print the local directory of the module
beam-hub inspect HANDLE              signatures, inputs and outputs (read, not loaded; --load loads)
beam-hub inspect --audit HANDLE      what the module can do besides compute (files, Python, network)
beam-hub cache list|verify|prune --older-than DAYS|clear
beam-hub pack DIR OUT.tar.gz         reproducible archive; prints its sha256
beam-hub embed --input P --output O  the batch embedding job (pipelines/embed.py)
beam-hub serve ROOT [--port 8080]    host modules over HTTP with the TF Hub protocol
beam-hub publish DIR DEST [--version N]  immutable versions at any fsspec destination
beam-hub alias set DEST NAME VERSION | list DEST | rm DEST NAME   named aliases (DEST@NAME)
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys

from beam_hub.errors import BeamHubError


def _cache(args: argparse.Namespace):
    """The local cache the management commands work on (the local tier of a shared cache)."""
    from beam_hub.cache import open_cache
    from beam_hub.cache.tiered import TieredCache

    cache = open_cache(args.cache_dir)
    return cache.local if isinstance(cache, TieredCache) else cache


def cmd_resolve(args: argparse.Namespace) -> int:
    from beam_hub.resolvers import resolve

    print(resolve(args.handle, cache_dir=args.cache_dir))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """`inspect --audit`: the audit, without loading the module; exit 1 when it found anything."""
    from beam_hub.auditing import audit

    report = audit(args.handle, allow_ops=args.allow_op, cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps({"handle": args.handle, "path": report.path, "audit": report.to_json()}, indent=2))
    else:
        print(f"module:  {args.handle}")
        print(f"path:    {report.path}")
        print("\n".join(report.lines()))
    return 0 if report.clean else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.audit:
        return cmd_audit(args)
    if not args.load:
        return _inspect_read(args)
    from beam_hub.module import load

    module = load(args.handle, tags=args.tags, cache_dir=args.cache_dir)
    if args.json:
        out = {name: spec.to_json() for name, spec in module.signatures.items()}
        print(
            json.dumps(
                {
                    "handle": args.handle,
                    "path": module.path,
                    "default": module.default_signature,
                    "signatures": out,
                    "loaded": True,
                },
                indent=2,
            )
        )
        return 0
    print(f"module:  {args.handle}")
    print(f"path:    {module.path}")
    print(f"format:  {'TF1 Hub format' if module.is_tf1_format else 'TF2 SavedModel'}")
    print(f"default: {module.default_signature}")
    print(f"variables: {len(module.variables)} ({len(module.trainable_variables)} trainable)")
    for name, spec in sorted(module.signatures.items()):
        print(f"\nsignature {name!r}:")
        for info in spec.inputs.values():
            print(f"  input   {info}")
        for info in spec.outputs.values():
            print(f"  output  {info}")
    return 0


def _inspect_read(args: argparse.Namespace) -> int:
    """`inspect` without --load: signatures read from saved_model.pb, no TensorFlow."""
    from beam_hub.resolvers import resolve
    from beam_hub.savedmodel import is_tf1_hub_module
    from beam_hub.signature_defs import default_signature, describe, read_signatures, shown

    path = resolve(args.handle, cache_dir=args.cache_dir)
    found = read_signatures(path, tags=args.tags)
    if args.json:
        out = {
            name: {"inputs": s["inputs"], "outputs": s["outputs"], "tags": s["tags"]}
            for name, s in found.items()
        }
        doc = {"handle": args.handle, "path": path, "default": default_signature(found), "signatures": out}
        print(json.dumps({**doc, "loaded": False}, indent=2))
        return 0
    print(f"module:  {args.handle}")
    print(f"path:    {path}")
    print(f"format:  {'TF1 Hub format' if is_tf1_hub_module(path) else 'TF2 SavedModel'}")
    print(f"default: {default_signature(found) or '(none: pass signature=<name>)'}")
    print("read from saved_model.pb, nothing loaded (--load loads it with TensorFlow)")
    for name, spec in sorted(found.items()):
        tags = ", ".join(map(shown, spec["tags"])) or "no tags"
        print(f"\nsignature {name!r} (graph: {tags}):")
        for key, info in spec["inputs"].items():
            print(f"  input   {describe(key, info)}")
        for key, info in spec["outputs"].items():
            print(f"  output  {describe(key, info)}")
    return 0


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def cmd_cache(args: argparse.Namespace) -> int:
    cache = _cache(args)
    if args.action == "list":
        entries = cache.entries()
        print(f"cache: {cache.root} ({len(entries)} entries, {sum(e.size for e in entries) / 1e6:.1f} MB)")
        for e in entries:
            print(
                f"{e.key}  {e.size / 1e6:9.1f} MB  last used {_when(e.last_used)}  {e.handle or '(unknown handle)'}"
            )
        return 0
    if args.action == "verify":
        results, removed = cache.repair(deep=not args.quick)
        bad = {path: problems for path, problems in results.items() if problems}
        for path in results:
            print(f"{'DAMAGED' if path in bad else 'ok     '}  {path}")
            for problem in bad.get(path, []):
                print(f"           {problem}")
            if path in bad:
                print(
                    "           removed: its next resolve fetches it again"
                    if path in removed
                    else "           not removed: another process is fetching it right now"
                )
        print(f"{len(results) - len(bad)} whole, {len(bad)} damaged, {len(removed)} removed")
        return 1 if bad else 0
    if args.action == "prune":
        removed = cache.prune(args.older_than)
        for e in removed:
            print(f"removed {e.key}  {e.handle or ''}")
        print(f"removed {len(removed)} entries not used for {args.older_than:g} days")
        return 0
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {len(removed)} entries from {cache.root}")
        return 0
    raise AssertionError(args.action)


def cmd_pack(args: argparse.Namespace) -> int:
    from beam_hub.archive import pack
    from beam_hub.savedmodel import require_saved_model_dir

    require_saved_model_dir(args.dir, args.dir)
    digest = pack(args.dir, args.out)
    print(f"{digest}  {args.out}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from pipelines.embed import main as embed_main

    try:
        return embed_main(args.beam_args, verbose=args.verbose)
    except (BeamHubError, ValueError, FileNotFoundError) as e:  # bad flags, inputs or module: one clear line
        print(f"beam-hub: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        logging.getLogger("beam_hub.embed").debug("the job failed", exc_info=True)
        print(
            f"beam-hub: error: the embedding job failed: {type(e).__name__}: {_first_line(e)} "
            "(run `beam-hub -v embed ...` for the details)",
            file=sys.stderr,
        )
        return 1


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cmd_serve(args: argparse.Namespace) -> int:
    from beam_hub.serve.app import serve

    serve(args.root, args.host, args.port, uncompressed_base=args.uncompressed_base, pack_dir=args.pack_dir)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from beam_hub.publish import publish
    from beam_hub.safety import audit_path
    from beam_hub.savedmodel import require_saved_model_dir

    require_saved_model_dir(args.dir, args.dir)
    print("\n".join(audit_path(args.dir).lines()), file=sys.stderr)
    print(
        publish(
            args.dir, args.dest, version=args.version, extracted=args.extracted, allow_risky=args.allow_risky
        )
    )
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    from beam_hub import alias_store

    if args.action == "set":
        alias = alias_store.set_alias(args.dest, args.name, args.version)
        print(f"{alias.dest}@{alias.name} -> {alias.handle}")
        return 0
    if args.action == "rm":
        alias_store.remove_alias(args.dest, args.name)
        print(f"removed {args.dest.rstrip('/')}@{args.name}")
        return 0
    found = alias_store.list_aliases(args.dest)
    if args.json:
        rows = [
            {"alias": a.name, "version": a.version, "set_at": a.set_at, "changes": a.changes}
            for a in found.values()
        ]
        print(json.dumps(rows, indent=2))
    elif not found:
        print(f"no aliases under {args.dest.rstrip('/')} (set one: beam-hub alias set DEST NAME VERSION)")
    for alias in found.values() if not args.json else ():
        print(
            f"{alias.name}\t{alias.version}\t{alias.set_at}\t{alias.changes} change{'s' if alias.changes != 1 else ''}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beam-hub", description="Resolve, inspect, cache and pack TF Hub-style modules."
    )
    parser.add_argument(
        "--cache-dir", help="module cache (default: $TFHUB_CACHE_DIR, else ~/.cache/beam_hub)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and cache decisions")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("resolve", help="fetch a module into the cache and print its local directory")
    p.add_argument("handle")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("inspect", help="show a module's signatures, inputs and outputs")
    p.add_argument("handle")
    p.add_argument(
        "--tags", nargs="*", default=None, help="graph variant tags (default: the module's default)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--load",
        action="store_true",
        help="load the module with TensorFlow (checks that it loads here; counts its variables) "
        "instead of reading its signatures from saved_model.pb",
    )
    p.add_argument(
        "--audit",
        action="store_true",
        help="list ops that read or write files, call Python, reach the network or are unknown here "
        "(the module is read, not loaded; exit 1 when any is found)",
    )
    p.add_argument(
        "--allow-op",
        action="append",
        default=[],
        metavar="OP",
        help="with --audit: accept this op (repeatable)",
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("cache", help="list, verify, prune or clear the module cache")
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("list", help="entries with handle, size and last use")
    v = csub.add_parser("verify", help="check every entry against its manifest (exit 1 if any is damaged)")
    v.add_argument("--quick", action="store_true", help="check sizes only, do not hash file contents")
    pr = csub.add_parser("prune", help="remove entries not used for a while")
    pr.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    csub.add_parser("clear", help="remove every entry")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("embed", help="the batch embedding job (see `beam-hub embed --help`)", add_help=False)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("serve", help="serve the modules under ROOT over HTTP (the TF Hub protocol)")
    p.add_argument("root")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8080, help="port (0: any free port; the URL is printed)")
    p.add_argument(
        "--uncompressed-base",
        default=None,
        help="mirror of the extracted modules (e.g. gs://bucket/prefix) for tf-hub-format=uncompressed",
    )
    p.add_argument(
        "--pack-dir",
        default=None,
        help="where archives of module directories are packed and kept (default ~/.cache/beam_hub_serve/packs)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("publish", help="pack DIR and publish it as the next (or given) version under DEST")
    p.add_argument("dir")
    p.add_argument("dest", help="any fsspec URL: a local directory, gs://bucket/models/name, ...")
    p.add_argument("--version", default=None, help="default: the next integer")
    p.add_argument(
        "--extracted", action="store_true", help="also upload the module directory as DEST/VERSION/"
    )
    p.add_argument(
        "--allow-risky",
        action="store_true",
        help="publish even when the audit finds ops that write files, call Python or reach the network",
    )
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("alias", help="named aliases of published versions (DEST@NAME): set, list, rm")
    asub = p.add_subparsers(dest="action", required=True)
    a = asub.add_parser("set", help="point DEST@NAME at VERSION (moving it back is a rollback)")
    a.add_argument("dest", help="where the versions are published (any fsspec URL)")
    a.add_argument(
        "name", help="the alias: a letter, then letters, digits, '_' or '-' ('latest' is computed)"
    )
    a.add_argument("version", help="a version published under DEST")
    a = asub.add_parser("list", help="every alias under DEST with its version")
    a.add_argument("dest")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = asub.add_parser("rm", help="remove alias NAME under DEST (its history stays)")
    a.add_argument("dest")
    a.add_argument("name")
    p.set_defaults(func=cmd_alias)

    p = sub.add_parser("pack", help="pack a module directory into a reproducible tar.gz")
    p.add_argument("dir")
    p.add_argument("out")
    p.set_defaults(func=cmd_pack)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before anything imports TensorFlow: no native start-up noise (oneDNN, CUDA probes) unless the
    # user set TF_CPP_MIN_LOG_LEVEL
    from beam_hub.native_stderr import quiet_tensorflow

    quiet = quiet_tensorflow()
    try:
        return _main(argv)
    finally:
        if quiet is not None:
            quiet.close()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "embed":  # everything else goes to the job's (Beam) option parser
        args.beam_args = extra + (["--hub_cache_dir", args.cache_dir] if args.cache_dir else [])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except BeamHubError as e:
        print(f"beam-hub: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
