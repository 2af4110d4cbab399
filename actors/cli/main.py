"""`edgevla` — the one console script. Subcommands live next to the code they drive.

Each entry of `COMMAND_MODULES` is a module with ``add_parser(subparsers)`` that registers its
subcommands and sets ``func``. Those modules import only argparse-level things at module level
and import heavy dependencies (torch, lerobot, mujoco) inside the handlers, so `edgevla run` on
a board never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "edgevla.actors.cli.runtime",        # run, check, status, scale, restart, stop
    "edgevla.actors.cli.demo",           # demo
    "edgevla.actors.cli.bench",          # bench
    "edgevla.actors.cli.recording",      # replay, inspect
    "edgevla.firmware_bridge.cli",       # mcu
    "edgevla.training.cli.main",         # dataset, train, eval, train-default
    "edgevla.deploy.cli",                # export, bundle
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevla",
        description="Run VLA policies as real-time actor graphs on embedded SoCs "
                    "(i.MX 95 class) with a Cortex-M7 motor controller.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        # Commands that own long work (run, demo, dataset record) handle Ctrl-C themselves and
        # end with their summary; anywhere else it is a stop, not a crash: no traceback.
        print(f"\nedgevla {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if not exc.filename:
            raise
        # a path the person gave that cannot be read or written: one line, not a traceback
        print(f"edgevla {args.command}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
