"""The `jaxcheck` command line: `jaxcheck check FILE.py:make_spec`, `jaxcheck demo`.

Exit codes: 0 passed, 1 a gradient check failed (or a leaf got worse than --baseline allows),
2 usage or spec error, with a message saying what to fix and no traceback (--traceback shows
it), 3 inconclusive (finite differences resolved too little of the gradient to decide).
argparse (the standard library) keeps the runtime dependencies to jax and numpy; the check
command's flags are added when it is used (they come from check_grad's options, whose module
imports JAX), so `jaxcheck --version` and `jaxcheck --help` answer without importing JAX.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: they import JAX
    from ._cli.spec import Spec
    from ._core.errors import WrongGradient
    from ._core.result import CheckResult


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
    print("\nOn your own code:  jaxcheck check checks.py:make_spec  (see docs/guide/ci.md)")
    return 0  # the demo worked: it found the bug it planted


def _flags() -> list[tuple[str, type, str]]:
    """check_grad's options that are flags, as the options declare them: (flag, type, help);
    --only and --progress are added their own way."""
    from ._grad.options import Options

    return [
        ("--" + f.name.replace("_", "-"), f.metadata["type"], f.metadata["flag"])
        for f in dataclasses.fields(Options)
        if f.metadata["flag"]
    ]


def _check(args: argparse.Namespace) -> int:
    from ._cli import baseline as _baseline
    from ._cli import report as _report
    from ._cli import spec as _spec
    from ._core.errors import WrongGradient

    # A baseline that is not there, or a report that could not be written, is said now, not
    # after the check has run.
    baseline = _baseline.read(args.baseline) if args.baseline else None
    if args.json:
        _report.check_writable("--json", args.json)
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
    # Under jax.distributed every process runs the check; process 0 speaks and writes.
    say = print if _lead() else lambda *a, **k: None
    try:
        result = spec.check(**overrides)
    except WrongGradient as e:  # some leaf's gradient cannot even be compared: failed
        say(f"jaxcheck: FAILED: the gradient under test is wrong: {e}")
        report = _report.not_compared(e, _the_rest(spec, overrides, e, say))
    else:
        say(result)
        report = result.to_dict()
    code = {"failed": 1, "inconclusive": 3}.get(report["verdict"], 0)
    if args.json and _lead():
        try:
            _report.write(args.json, json.dumps(report, indent=1) + "\n")
        except OSError as e:  # checked before the check; the disk may still be full
            print(f"jaxcheck: error: --json {args.json}: not written: {e}", file=sys.stderr)
            code = code or 2  # a failed check stays a failed check (1)
        else:
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
    return 1 if worse else code


def _the_rest(
    spec: Spec, overrides: dict[str, Any], e: WrongGradient, say: Callable[..., None]
) -> CheckResult | None:
    """The check of the leaves that can still be compared where `e` stopped it (their
    CheckResult, printed), or None where none can."""
    from ._core.errors import WrongGradient

    if not e.comparable:
        return None
    say(f"\nThe other leaves, which can be compared ({', '.join(e.comparable)}):")
    only = [f"^{re.escape(path)}$" for path in e.comparable]
    try:
        # without the journal: it is the whole check's, which runs once the gradient is fixed
        result = spec.check(**{**overrides, "only": only, "journal": None})
    except WrongGradient as again:  # grad_fn returns another structure on another call
        say(f"jaxcheck: FAILED: they cannot be compared either: {again}")
        return None
    # the leaves left out were named above, not skipped as only= says of them
    skipped = tuple(s for s in result.skipped if s[0] not in dict(e.reasons))
    result = dataclasses.replace(result, skipped=skipped)
    say(result)
    return result


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


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that can add its arguments when it is first used (`fill`)."""

    fill: Callable[[argparse.ArgumentParser], None] | None = None

    def filled(self) -> _Parser:
        if self.fill is not None:
            fill, self.fill = self.fill, None
            fill(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        return super(_Parser, self.filled()).parse_known_args(args, namespace)

    def format_usage(self) -> str:
        return super(_Parser, self.filled()).format_usage()

    def format_help(self) -> str:
        return super(_Parser, self.filled()).format_help()


def build_parser(*, defer: bool = False) -> argparse.ArgumentParser:
    """The `jaxcheck` parser. defer: add the check command's flags when it is used (they
    import JAX), as `main` does; else now, for a caller that reads them."""
    parser = _Parser(
        prog="jaxcheck",
        description="Verify gradients against finite differences, element by element.",
        epilog="Exit codes: 0 passed, 1 a check failed, 2 usage or spec error, 3 inconclusive.",
    )
    parser.add_argument("--version", action="version", version=f"jaxcheck {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    check.set_defaults(run=_check, command_parser=check)
    check.fill = _check_arguments
    if not defer:
        check.filled()
    return parser


def _check_arguments(check: argparse.ArgumentParser) -> None:
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


def _unrecognized(parser: argparse.ArgumentParser, unknown: list[str], check: bool) -> str:
    """argparse's "unrecognized arguments", with the flag that is meant for each unknown one
    (check: the parser is the check command's)."""
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    lines = [f"unrecognized arguments: {' '.join(unknown)}"]
    for given in unknown:
        flag = given.split("=", 1)[0]
        meant = _meant(flag, options, check) if re.match(r"-+[A-Za-z]", flag) else ""
        lines += [f"  {flag}: {meant}"] if meant else []
    return "\n".join(lines)


def _meant(given: str, options: list[str], check: bool) -> str:
    """What an unknown flag is meant to be: for the check command, from the names people
    reach for (the table the Python API answers an unknown keyword from: --tol is --rtol or
    --atol), then a flag it begins with (--eps-size) or a flag close to it (--rtl); "" where
    nothing is close."""
    name = given.lstrip("-").replace("-", "_")
    flags = {o[2:].replace("-", "_"): o for o in options}
    aliases, python = {}, set()
    if check:  # its flags are check_grad's options
        from ._grad.options import ALIASES, NAMES

        aliases, python = ALIASES, {*NAMES, "grad_fn"}

    def answer(key: str) -> str:
        meant = re.findall(r"(\w+)=", aliases[key]) if key in aliases else [key]
        as_flags = [flags[m] for m in meant if m in flags]
        if as_flags:
            return f"did you mean {' or '.join(as_flags)}?"
        in_spec = [m for m in meant if m in python]
        if in_spec:  # an option with no flag (a function): the spec gives it
            return (
                f"{in_spec[0]} has no flag; give it in the spec: "
                f"jaxcheck.Spec(fn, params, args, {in_spec[0]}=...)"
            )
        return ""

    known = sorted({*flags, *aliases, *python} - {"help"})
    if name in known:
        return answer(name)
    from ._grad.options import closest  # (imports JAX: only for a flag that does not exist)

    close = closest(name, known, n=1)
    return answer(close[0]) if close else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(defer=True)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        where = getattr(args, "command_parser", parser)  # the check command's usage, or ours
        where.error(_unrecognized(where, unknown, check=args.command == "check"))
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    keep = getattr(args, "traceback", False) and "JAXCHECK_TRACEBACK" not in os.environ
    if keep:
        os.environ["JAXCHECK_TRACEBACK"] = "1"  # jaxcheck's own frames too
    try:
        return args.run(args)
    except KeyboardInterrupt as e:
        from ._engine.progress import said  # (no jax)

        if not said(e):  # a check says its own line: what it had done, how to resume
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
