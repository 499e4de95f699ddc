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


HOST = textwrap.dedent("""
    import hashlib, json, sys
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{{port}}", num_processes=2, process_id=pid,
                               initialization_timeout=120)
    sys.path.insert(0, {root!r})
    import numpy as np
    import jaxcheck
    from tests.spec_example import backward, data, loss

    params, x, y = data()
    good = jaxcheck.check_grad(loss, params, x, y)
    bad = jaxcheck.check_grad(loss, params, x, y, grad_fn=backward)
    if jax.process_index() == 0:  # one process writes the report
        digest = lambda r: {{k: hashlib.sha256(np.asarray(r.numeric[k]).tobytes()).hexdigest()
                            for k in params}}
        with open(out, "w") as f:
            json.dump({{"devices": len(jax.devices()), "notes": list(good.notes),
                       "good": [good.passed, digest(good)],
                       "bad": [bad.passed, [[e.path, list(e.index)] for e in bad.failures]]}}, f)
""")


def test_two_processes_over_loopback_check_together_and_process_0_reports(tmp_path):
    import hashlib
    import socket

    import numpy as np

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "host.py"
    script.write_text(HOST.format(root=root))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), port, str(out)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    report = json.loads(out.read_text())
    assert report["devices"] == 2
    assert "each chunk of perturbations split over 2 devices" in report["notes"]
    params, x, y = data()
    single = jaxcheck.check_grad(loss, params, x, y)
    digest = {
        k: hashlib.sha256(np.asarray(single.numeric[k]).tobytes()).hexdigest() for k in params
    }
    assert report["good"] == [True, digest]
    from tests.spec_example import backward

    bad = jaxcheck.check_grad(loss, params, x, y, grad_fn=backward)
    assert report["bad"] == [False, [[e.path, list(e.index)] for e in bad.failures]]
