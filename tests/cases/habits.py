"""Layer checks as course exercises write them: CS231n-style forward/backward pairs in NumPy.

Each case is a layer `forward(*inputs) -> (out, cache)` and `backward(dout, cache) -> grads`
(one per input, in order), checked the way the exercise does it, with an upstream gradient:
`check_grad(forward_out, *inputs, argnums=..., cotangent=dout, grad_fn=...)`. Each has a
correct backward and a planted bug of a kind people make, with the diagnosis it should get
("" where none applies). Shared by scripts/habits.py and tests/test_habits.py.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    forward: Callable  # (*inputs) -> (out, cache)
    backward: Callable  # (dout, cache, bug) -> tuple of gradients, one per checked input
    inputs: Callable  # rng -> tuple of inputs
    argnums: tuple[int, ...]
    bug: str  # what the planted bug is
    wrong: str  # the input whose gradient the bug breaks (a parameter name)
    diagnosis: str  # a phrase the bug's diagnosis contains ("" for none expected)


# ---- affine --------------------------------------------------------------------------------


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)


def affine_backward(dout, cache, bug=False):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0) / (len(dout) if bug else 1)  # bug: a mean where the sum is
    return dx, dw, db


# ---- sigmoid and relu ------------------------------------------------------------------------


def sigmoid_forward(x):
    out = 1 / (1 + np.exp(-x))
    return out, out


def sigmoid_backward(dout, cache, bug=False):
    s = cache
    return ((-1 if bug else 1) * dout * s * (1 - s),)  # bug: the sign


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache, bug=False):
    x = cache
    return (dout * (x > 0) if not bug else dout * (x > 0) * (np.arange(x.shape[-1]) != 1),)


# ---- batch norm (training mode) ---------------------------------------------------------------


def batchnorm_forward(x, gamma, beta):
    mu, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    return gamma * xhat + beta, (xhat, gamma, var)


def batchnorm_backward(dout, cache, bug=False):
    xhat, gamma, var = cache
    n = len(dout)
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (n * np.sqrt(var + 1e-5))
    dgamma = (dout * xhat).sum(axis=0)
    dbeta = dout.sum(axis=0) * (0 if bug else 1)  # bug: a dropped path
    return dx, dgamma, dbeta


# ---- a square linear map, used transposed --------------------------------------------------------


def square_forward(x, w):
    return x @ w, (x, w)


def square_backward(dout, cache, bug=False):
    x, w = cache
    dw = x.T @ dout
    return dout @ w.T, (dw.T if bug else dw)  # bug: dW transposed


# ---- L2-regularized affine -----------------------------------------------------------------------

REG = 0.05


def reg_affine_forward(x, w):
    return x @ w + REG * np.sum(w * w) / x.shape[1], (x, w)


def reg_affine_backward(dout, cache, bug=False):
    x, w = cache
    dw = x.T @ dout
    if not bug:  # bug: the regularization's gradient left out
        dw = dw + 2 * REG * w / x.shape[1] * dout.sum()
    return dout @ w.T, dw


# ---- softmax cross-entropy (scalar loss: no cotangent) -----------------------------------------


def softmax_loss_forward(x, y):
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean(), (np.exp(logp), y)


def softmax_loss_backward(dout, cache, bug=False):
    p, y = cache
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    return (dout * d / (1 if bug else len(y)),)  # bug: the 1/N of the mean left out


# ---- naive convolution -----------------------------------------------------------------------


def conv_forward(x, w, b):
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, f, h, wd))
    for i in range(h):
        for j in range(wd):
            patch = xp[:, :, i : i + hh, j : j + ww].reshape(n, -1)
            out[:, :, i, j] = patch @ w.reshape(f, -1).T + b
    return out, (x, w, b)


def conv_backward(dout, cache, bug=False):
    x, w, b = cache
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(h):
        for j in range(wd):
            patch = xp[:, :, i : i + hh, j : j + ww]
            d = dout[:, :, i, j]  # [n, f]
            dw += np.einsum("nf,nchw->fchw", d, patch)
            dxp[:, :, i : i + hh, j : j + ww] += np.einsum("nf,fchw->nchw", d, w)
    db = dout.sum(axis=(0, 2, 3))
    if bug:  # bug: the last filter's kernel gradient left at zero... for one input channel
        dw[-1] = 0
    return dxp[:, :, 1:-1, 1:-1], dw, db


def _rng_inputs(*shapes):
    return lambda rng: tuple(rng.normal(size=s) for s in shapes)


CASES = [
    Case("affine", affine_forward, affine_backward, _rng_inputs((4, 3, 2), (6, 5), (5,)),
         (0, 1, 2), "db as a mean of dout, not its sum", "b", "≈ 0.25 × numeric"),
    Case("sigmoid", sigmoid_forward, sigmoid_backward, _rng_inputs((5, 4)), (0,),
         "the sign of dx flipped", "x", "sign is flipped"),
    Case("relu", relu_forward, relu_backward,
         lambda rng: (np.where(np.abs(x := rng.normal(size=(6, 4))) < 0.1, 0.5, x),),
         (0,), "dx zeroed in column 1", "x", "gradient is 0"),
    Case("batchnorm", batchnorm_forward, batchnorm_backward,
         _rng_inputs((8, 3), (3,), (3,)), (0, 1, 2), "dbeta dropped", "beta",
         "gradient is 0 everywhere"),
    Case("square", square_forward, square_backward, _rng_inputs((5, 4), (4, 4)), (0, 1),
         "dW transposed", "w", "transposed"),
    Case("l2 affine", reg_affine_forward, reg_affine_backward, _rng_inputs((5, 4), (4, 3)),
         (0, 1), "the L2 term's gradient left out", "w", "missing from the gradient"),
    Case("softmax loss", softmax_loss_forward, softmax_loss_backward,
         lambda rng: (rng.normal(size=(6, 4)), rng.integers(0, 4, 6)), (0,),
         "the mean's 1/N left out", "x", "≈ 6 × numeric"),
    Case("conv", conv_forward, conv_backward, _rng_inputs((2, 2, 4, 4), (3, 2, 3, 3), (3,)),
         (0, 1, 2), "the last filter's dW left at zero", "w", "gradient is 0"),
]  # fmt: skip


def check(case: Case, bug: bool, seed: int = 0):
    """The check as the exercise writes it, with the upstream gradient as cotangent."""
    import jaxcheck

    rng = np.random.default_rng(seed)
    inputs = case.inputs(rng)
    out, _ = case.forward(*inputs)
    scalar = np.ndim(out) == 0
    dout = None if scalar else rng.normal(size=np.shape(out))

    def grad_fn(*xs):
        _, cache = case.forward(*xs)
        return case.backward(1.0 if scalar else dout, cache, bug)

    @functools.wraps(case.forward)  # the leaves are named after the layer's inputs
    def out(*xs):
        return case.forward(*xs)[0]

    return jaxcheck.check_grad(out, *inputs, argnums=case.argnums, cotangent=dout,
                               grad_fn=grad_fn)  # fmt: skip
