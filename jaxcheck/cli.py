"""The `jaxcheck` command line: `jaxcheck check FILE.py:make_spec`, `jaxcheck demo`.

Exit codes: 0 passed, 1 a gradient check failed (or a leaf got worse than --baseline allows),
2 usage or spec error, with a message saying what to fix and no traceback (--traceback shows
it), 3 inconclusive (finite differences resolved too little of the gradient to decide).
argparse (the standard library) keeps the runtime dependencies to jax and numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path


def _version() -> str:
    from . import __version__

    return __version__


def _demo(args: argparse.Namespace) -> int:
    from ._cli.demo import BUG_LINE, make_demo
    from ._grad.check import check_grad

    loss, backward, params, X, y = make_demo()
    print(
        "jaxcheck demo: a 4-8-1 tanh network, forward pass in JAX, backward pass by hand in NumPy."
    )
    print(f"The backward has a planted bug, as in the deeplearning.ai exercise:  {BUG_LINE}")
    print("Checking backward against central finite differences of the forward pass...\n")
    result = check_grad(loss, params, X, y, grad_fn=backward)
    print(result)
    if not result.passed:
        worst = result.failures[0]
        ratio = worst.analytic / worst.numeric if worst.numeric else float("nan")
        print(
            f"\nThe report points into {worst.path}: every element fails, with analytic = "
            f"{ratio:.2f} x numeric, the factor 4 of the bug, which the diagnosis names. The "
            "other leaves pass."
        )
    print("\nOn your own code:  jaxcheck check checks.py:make_spec  (see the README)")
    return 0  # the demo worked: it found the bug it planted


def _flags() -> list[tuple[str, type, str]]:
    """check_grad's options that are flags, as the options declare them: (flag, type, help);
    --only and --progress are added their own way."""
    import dataclasses

    from ._grad.options import Options

    return [
        ("--" + f.name.replace("_", "-"), f.metadata["type"], f.metadata["flag"])
        for f in dataclasses.fields(Options)
        if f.metadata["flag"]
    ]


def _check(args: argparse.Namespace) -> int:
    from ._cli import baseline as _baseline
    from ._cli import spec as _spec
    from ._core.errors import WrongGradient

    # A baseline that is not there is said now, not after the check has run.
    baseline = _baseline.read(args.baseline) if args.baseline else None
    spec = _spec.load(args.target)
    overrides = {}
    for flag, _, _ in _flags():
        key = flag[2:].replace("-", "_")
        value = getattr(args, key)
        if value is not None:
            overrides[key] = _eps(value) if key == "eps" else value
    if args.only:
        overrides["only"] = args.only
    if args.progress is not None:
        overrides["progress"] = args.progress
    try:
        result = spec.check(**overrides)
    except WrongGradient as e:  # the gradient under test is wrong before any comparison
        print(f"jaxcheck: FAILED: the gradient under test is wrong: {e}")
        return 1
    # Under jax.distributed every process runs the check; process 0 speaks and writes.
    say = print if _lead() else lambda *a, **k: None
    say(result)
    report = result.to_dict()
    if args.json and _lead():
        Path(args.json).write_text(result.to_json(indent=1) + "\n")
        say(f"\nreport written to {args.json}")
    worse: list = []
    if baseline is not None:
        worse, remarks = _baseline.compare(report, baseline, args.factor)
        say(f"\nagainst the baseline {args.baseline} (a leaf fails at {args.factor:g}x worse):")
        for line in worse:
            say(f"  WORSE {line}")
        for line in remarks:
            say(f"  note: {line}")
        if not worse:
            say("  no leaf got worse")
    if worse or result.verdict == "failed":
        return 1
    return 3 if result.verdict == "inconclusive" else 0


def _lead() -> bool:
    import jax

    return jax.process_index() == 0


def _number_or_text(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _eps(values: list[str]):
    """--eps given once as a number, 'auto' or 'rule'; or as PATH=STEP, once per leaf."""
    from ._cli.spec import SpecError

    per_leaf = [v for v in values if "=" in v]
    if not per_leaf:
        if len(values) > 1:
            raise SpecError(f"--eps given {len(values)} times: give one step, or PATH=STEP each")
        return _number_or_text(values[0])
    if len(per_leaf) != len(values):
        raise SpecError("--eps: give one step for every leaf, or PATH=STEP for each, not both")
    steps = {}
    for v in per_leaf:
        path, _, step = v.rpartition("=")
        try:
            steps[path.strip()] = float(step)
        except ValueError:
            raise SpecError(f"--eps {v!r}: the step after '=' must be a number") from None
    return steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxcheck",
        description="Verify gradients against finite differences, element by element.",
        epilog="Exit codes: 0 passed, 1 a check failed, 2 usage or spec error, 3 inconclusive.",
    )
    parser.add_argument("--version", action="version", version=f"jaxcheck {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="check a small network whose handwritten backward has a planted bug"
    )
    demo.set_defaults(run=_demo)
    check = commands.add_parser(
        "check",
        help="run the check a spec function describes",
        description="Run jaxcheck.check_grad as described by FUNCTION() -> jaxcheck.Spec. "
        "Flags override the spec's options.",
        epilog="Exit codes: 0 passed, 1 a check failed or a leaf got worse than the baseline "
        "allows, 2 usage or spec error, 3 inconclusive.",
    )
    check.add_argument("target", metavar="FILE.py:FUNCTION | module:FUNCTION")
    for flag, kind, text in _flags():
        if flag == "--eps":
            check.add_argument(flag, type=kind, help=text, action="append")
        else:
            check.add_argument(flag, type=kind, help=text)
    check.add_argument(
        "--only", action="append", metavar="REGEX", help="check only matching leaves (repeatable)"
    )
    check.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="a progress bar on stderr"
    )
    check.add_argument("--json", metavar="PATH", help="write the JSON report here")
    check.add_argument(
        "--baseline", metavar="PATH", help="a JSON report to compare with, leaf by leaf"
    )
    check.add_argument(
        "--factor",
        type=float,
        default=10.0,
        help="with --baseline: fail a leaf whose difference grew more than this (default 10)",
    )
    check.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    keep = getattr(args, "traceback", False) and "JAXCHECK_TRACEBACK" not in os.environ
    if keep:
        os.environ["JAXCHECK_TRACEBACK"] = "1"  # jaxcheck's own frames too
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("jaxcheck: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into head or similar: not an error
        sys.stdout = None
        return 0
    except Exception as e:  # noqa: BLE001 - a user's mistake: say what, without a traceback
        show = getattr(args, "traceback", False)
        if show:
            traceback.print_exc()
        if _is_ours(e):
            print(f"jaxcheck: error: {e}", file=sys.stderr)
        else:
            print(
                f"jaxcheck: error: {type(e).__name__} raised at {_origin(e)}: {e}"
                + ("" if show else "\n(--traceback shows the full traceback)"),
                file=sys.stderr,
            )
        return 2
    finally:
        if keep:
            os.environ.pop("JAXCHECK_TRACEBACK", None)


def _is_ours(e: Exception) -> bool:
    from ._cli.spec import SpecError

    if isinstance(e, SpecError):
        return True
    frames = traceback.extract_tb(e.__traceback__)
    # raised by the installed package itself: decided by its own location, not by a folder
    # name (a clone made by `git clone .../jaxcheck` holds the user's files under "jaxcheck")
    package = Path(__file__).resolve().parent
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(package)


def _origin(e: Exception) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


if __name__ == "__main__":
    sys.exit(main())
