"""Process-wide settings: the XLA:CPU flags ``import funcnets`` adds and its CPU memory
tuning (in fresh processes, since XLA reads its flags once and JAX its dispatch mode)."""

import os
import subprocess
import sys

import pytest

from funcnets.config import XLA_CPU_FLAGS

PROBE = "import os, funcnets, jax; jax.numpy.zeros(1).block_until_ready(); print(os.environ.get('XLA_FLAGS', ''))"


def _flags_after_import(env: dict[str, str], code: str = PROBE) -> str:
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("user_flags", ["", "--xla_force_host_platform_device_count=2"])
def test_import_adds_flags_and_keeps_the_users(user_flags):
    flags = _flags_after_import({"XLA_FLAGS": user_flags, "FUNCNETS_XLA_FLAGS": ""})
    assert flags.split() == [*user_flags.split(), *XLA_CPU_FLAGS]


def test_the_users_setting_of_the_same_option_wins():
    mine = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
    others = [f for f in XLA_CPU_FLAGS if not f.startswith("--xla_cpu_experimental_ynn_fusion_type=")]
    assert _flags_after_import({"XLA_FLAGS": mine, "FUNCNETS_XLA_FLAGS": ""}).split() == [mine, *others]


def test_opt_out():
    assert _flags_after_import({"XLA_FLAGS": "", "FUNCNETS_XLA_FLAGS": "0"}) == ""


@pytest.mark.parametrize("version", ["0.9.2", "0.11.0"])
def test_only_on_the_measured_jaxlib_series(version):
    # a newer jaxlib may not know these experimental flags, and XLA aborts on unknown ones
    code = f"import jaxlib; jaxlib.__version__ = {version!r}; " + PROBE.replace("import os, ", "import os; import ")
    assert _flags_after_import({"XLA_FLAGS": "", "FUNCNETS_XLA_FLAGS": ""}, code) == ""


def test_too_late_once_jax_has_started():
    code = "import os, jax; jax.numpy.zeros(1); import funcnets; print(funcnets.config.tune_xla_cpu(), os.environ.get('XLA_FLAGS', ''))"
    assert _flags_after_import({"XLA_FLAGS": "", "FUNCNETS_XLA_FLAGS": ""}, code) == "False"


# A program with a 100 MB temporary (the outer product feeds a dot, so it is materialised),
# run 10 times after warm-up: the median page faults of a run, and the dispatch mode. (Tuned,
# the first runs after a compile fault too: the compile returned the heap's free pages.)
FAULTS = """
import resource, statistics, funcnets, jax, jax.numpy as jnp
x = jnp.linspace(0, 1, 5000, dtype=jnp.float32)
f = jax.jit(lambda x: jnp.outer(jnp.sin(x), x) @ x)
for _ in range(3):
    f(x).block_until_ready()
faults = []
for _ in range(10):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(jax.config.values["jax_cpu_enable_async_dispatch"], int(statistics.median(faults)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_cpu_memory_tuning_reuses_a_programs_temporaries():
    """With the tuning (the default) the 100 MB temporary (24,414 pages) is reused from
    run to run; opted out, JAX's async dispatch thread maps it afresh every run."""
    tuned = _flags_after_import({"FUNCNETS_CPU_MEMORY": None}, FAULTS).split()
    default = _flags_after_import({"FUNCNETS_CPU_MEMORY": "0"}, FAULTS).split()
    assert tuned[0] == "False" and default[0] == "True"
    assert int(tuned[1]) < 6000 < 20000 < int(default[1]), (tuned, default)


# 200 MB malloc'd and freed (a bytes object), then a compile: the process's resident MB
# after the free and after the compile
TRIM = """
import funcnets, jax, jax.numpy as jnp
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
block = b"x" * (200 << 20)
del block
freed = rss()
jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()
print(freed, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_cpu_memory_tuning_returns_freed_memory_after_a_compile():
    """Tuned, freed memory stays with the process (the next step reuses it) until the
    next XLA compile, which returns it to the kernel; opted out, glibc unmaps it at once."""
    freed, compiled = map(int, _flags_after_import({"FUNCNETS_CPU_MEMORY": None}, TRIM).split())
    assert freed - compiled > 150, (freed, compiled)
    freed, compiled = map(int, _flags_after_import({"FUNCNETS_CPU_MEMORY": "0"}, TRIM).split())
    assert abs(freed - compiled) < 100 and freed < 600, (freed, compiled)


def test_cpu_memory_tuning_too_late_once_jax_has_started():
    code = "import jax; jax.numpy.zeros(1); import funcnets; print(funcnets.config.tune_cpu_memory())"
    assert _flags_after_import({"FUNCNETS_CPU_MEMORY": None}, code) == "False"


def test_import_exposes_every_public_name():
    # a fresh process: a submodule imported by another test must not hide a missing import
    code = "import funcnets; print([n for n in funcnets.__all__ if not hasattr(funcnets, n)])"
    assert _flags_after_import({}, code) == "[]"


def test_one_off_compile_options(monkeypatch):
    # Module.init compiles with them: accepted by this jaxlib's XLA, and the draws equal
    # the default compile's to float32 rounding (XLA may contract a multiply-add).
    import jax
    import jaxlib
    import numpy as np

    from funcnets import nn
    from funcnets.config import one_off_compile_options

    assert one_off_compile_options()
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4))
    ours = jax.tree.leaves(model.init(jax.random.PRNGKey(1)))
    default = jax.tree.leaves(jax.jit(model.init_tree)(jax.random.PRNGKey(1)))
    for a, b in zip(ours, default, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-7, atol=1e-8)
    # JAX takes compiler options only on a top-level jit: inside a trace, init is traced
    key = jax.random.PRNGKey(1)
    for nested in (jax.jit(lambda: model.init(key))(), jax.jit(model.init)(key), jax.eval_shape(model.init, key)):
        assert [x.shape for x in jax.tree.leaves(nested)] == [x.shape for x in ours]
    monkeypatch.setattr(jaxlib, "__version__", "0.11.0")
    assert one_off_compile_options() == {}
