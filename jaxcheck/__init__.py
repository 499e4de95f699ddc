"""jaxcheck: verify gradients against finite differences, element by element."""

from importlib.metadata import PackageNotFoundError, version

from ._check import check_grad as check_grad
from ._errors import GradCheckError as GradCheckError
from ._identities import check_jvp as check_jvp
from ._identities import check_vjp as check_vjp
from ._identity_report import IdentityResult as IdentityResult
from ._monitor import GradMonitor as GradMonitor
from ._result import CheckResult as CheckResult
from ._result import ElementReport as ElementReport
from ._result import LeafReport as LeafReport
from ._spec import Spec as Spec
from ._sweep import SweepResult as SweepResult
from ._sweep import sweep_eps as sweep_eps
from .testing import assert_grad as assert_grad

try:
    __version__ = version("jaxcheck")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
