"""jaxcheck: verify gradients against finite differences, element by element."""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("jaxcheck")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
