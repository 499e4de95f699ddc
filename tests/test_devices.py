"""devices=: each chunk of perturbations split over several devices, with the values of a
single-device run. Eight CPU devices are simulated in a subprocess (the device count is fixed
before JAX starts)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

import jaxcheck
from tests.spec_example import data, loss

CHILD = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    sys.path.insert(0, {root!r})
    import jax, numpy as np
    import jaxcheck
    from tests.spec_example import backward, data, loss

    params, x, y = data()
    one = jax.devices()[:1]
    out = {{"devices": len(jax.devices())}}
    for name, opts in {{
        "full": {{}},
        "chunked": {{"chunk_size": 8}},
        "directional": {{"mode": "directional"}},
        "sample": {{"mode": "sample", "samples": 5}},
        "richardson": {{"method": "richardson"}},
        "bug": {{"grad_fn": backward}},
    }}.items():
        many = jaxcheck.check_grad(loss, params, x, y, **opts)
        single = jaxcheck.check_grad(loss, params, x, y, devices=one, **opts)
        same = all(
            np.array_equal(many.numeric[k], single.numeric[k], equal_nan=True) for k in params
        )
        out[name] = {{
            "same": bool(same),
            "passed": [many.passed, single.passed],
            "failures": [[e.path, list(e.index)] for e in many.failures]
                == [[e.path, list(e.index)] for e in single.failures],
            "notes": list(many.notes),
        }}
    print(json.dumps(out))
""")


def test_eight_devices_give_the_single_device_values():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=root)], capture_output=True, text=True,
        timeout=600, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    for name in ("full", "chunked", "directional", "sample", "richardson", "bug"):
        assert out[name]["same"], (name, out[name])
        assert out[name]["failures"], (name, out[name])
        assert "each chunk of perturbations split over 8 devices" in out[name]["notes"]
    assert out["full"]["passed"] == [True, True]
    assert out["bug"]["passed"] == [False, False]


@pytest.mark.parametrize("devices", [[], "cpu", [0, 1]])
def test_bad_devices(devices):
    params, x, y = data()
    with pytest.raises(ValueError, match="pass a list of distinct jax devices"):
        jaxcheck.check_grad(loss, params, x, y, devices=devices)


def test_one_device_given_is_a_plain_run():
    params, x, y = data()
    result = jaxcheck.check_grad(loss, params, x, y, devices=jax.devices()[:1])
    assert result.passed and not any("devices" in n for n in result.notes)
