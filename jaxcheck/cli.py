"""The `jaxcheck` command line: `jaxcheck demo`, `jaxcheck --version`.

Exit codes: 0 success, 1 a gradient check failed, 2 usage error (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _version() -> str:
    from . import __version__

    return __version__


def _demo(args: argparse.Namespace) -> int:
    from ._check import check_grad
    from ._demo import BUG_LINE, make_demo

    loss, backward, params, X, y = make_demo()
    print(
        "jaxcheck demo: a 4-8-1 tanh network, forward pass in JAX, backward pass by hand in NumPy."
    )
    print(f"The backward has a planted bug (seed 003's):  {BUG_LINE}")
    print("Checking backward against central finite differences of the forward pass...\n")
    result = check_grad(loss, params, X, y, grad_fn=backward)
    print(result)
    if not result.passed:
        worst = result.failures[0]
        ratio = worst.analytic / worst.numeric if worst.numeric else float("nan")
        print(
            f"\nThe report points into {worst.path}: every element fails, with analytic = "
            f"{ratio:.2f} x numeric, the factor 4 of the bug. The other leaves pass."
        )
    print("\nOn your own code:  jaxcheck.check_grad(loss, params, X, y, grad_fn=backward)")
    return 0  # the demo worked: it found the bug it planted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxcheck",
        description="Verify gradients against finite differences, element by element.",
    )
    parser.add_argument("--version", action="version", version=f"jaxcheck {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="check a small network whose handwritten backward has a planted bug"
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
