"""jaxcheck: verify gradients against finite differences, element by element.

The public names are imported when first used (PEP 562), so that `jaxcheck --version` and
`jaxcheck --help` answer without importing JAX; `from jaxcheck import check_grad` and
`jaxcheck.check_grad` work as for any package. Type checkers read the imports below.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import cli as cli
    from . import testing as testing
    from ._cli.spec import Spec as Spec
    from ._core.errors import GradCheckError as GradCheckError
    from ._core.result import CheckResult as CheckResult
    from ._core.result import ElementReport as ElementReport
    from ._core.result import LeafReport as LeafReport
    from ._grad.check import check_grad as check_grad
    from ._grad.explore import explore as explore
    from ._grad.explore_report import ExploreResult as ExploreResult
    from ._grad.sweep import SweepResult as SweepResult
    from ._grad.sweep import sweep_eps as sweep_eps
    from ._grad.taylor import TaylorResult as TaylorResult
    from ._grad.taylor import taylor_test as taylor_test
    from ._monitor import GradMonitor as GradMonitor
    from ._rules.identities import check_jvp as check_jvp
    from ._rules.identities import check_vjp as check_vjp
    from ._rules.report import IdentityResult as IdentityResult
    from .testing import assert_grad as assert_grad

# public name -> the module that defines it ("" for a submodule: the name is the module);
# tests/test_version.py checks that this and the imports above name the same things
_WHERE = {
    "cli": "",
    "testing": "",
    "Spec": "._cli.spec",
    "GradCheckError": "._core.errors",
    "CheckResult": "._core.result",
    "ElementReport": "._core.result",
    "LeafReport": "._core.result",
    "check_grad": "._grad.check",
    "explore": "._grad.explore",
    "ExploreResult": "._grad.explore_report",
    "SweepResult": "._grad.sweep",
    "sweep_eps": "._grad.sweep",
    "TaylorResult": "._grad.taylor",
    "taylor_test": "._grad.taylor",
    "GradMonitor": "._monitor",
    "check_jvp": "._rules.identities",
    "check_vjp": "._rules.identities",
    "IdentityResult": "._rules.report",
    "assert_grad": ".testing",
}

__all__ = ["__version__", *_WHERE]

try:
    __version__ = version("jaxcheck")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


if not TYPE_CHECKING:  # a type checker sees the imports above, not an Any for every name

    def __getattr__(name: str):
        import importlib

        where = _WHERE.get(name)
        if where is None:
            raise AttributeError(f"module 'jaxcheck' has no attribute {name!r}")
        module = importlib.import_module(where or f".{name}", __name__)
        value = module if not where else getattr(module, name)
        globals()[name] = value  # found once: later lookups do not come here
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
