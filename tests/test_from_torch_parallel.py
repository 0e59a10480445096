"""from_torch + data parallelism: a converted torch model trained with funcnets' data-parallel
step on 2 simulated CPU devices ends 2 steps with the parameters and BatchNorm buffers of the
single-device step (float64, 1e-10). In a subprocess: the device count is fixed when JAX starts."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import torch
    import torch.nn as tnn

    from funcnets import optim, parallel, train
    from funcnets.convert import from_torch

    assert jax.device_count() == 2, jax.devices()


    class Net(tnn.Module):  # conv, BatchNorm (synchronised over the devices), in-place ops, a residual
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(1, 4, 3, padding=1)
            self.bn = tnn.BatchNorm2d(4)
            self.act = tnn.ReLU(inplace=True)
            self.fc = tnn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            h = self.act(self.bn(self.conv(x)))
            h += x
            return self.fc(torch.flatten(h, 1))


    torch.manual_seed(0)
    model, params, state = from_torch(Net().double(), torch.randn(2, 1, 6, 6, dtype=torch.float64))
    opt = optim.sgd(0.1, momentum=0.9)
    step = train.make_train_step(train.supervised_loss(model), opt, donate=False)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 1, 6, 6)), rng.integers(0, 3, 8).astype(np.int32)) for _ in range(2)]
    mesh = parallel.data_mesh()
    results = []
    for devices in (1, 2):
        ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(0))
        if devices == 2:
            ts = parallel.distribute(ts, mesh)
        for b in batches:
            ts, _ = step(ts, parallel.shard_batch(b, mesh) if devices == 2 else tuple(jnp.asarray(v) for v in b))
        results.append(jax.device_get((ts.params, ts.model_state)))
    one, two = (dict(model.named_parameters(p) + model.named_buffers(s)) for p, s in results)
    assert set(one) == {n for n in Net().state_dict()}, sorted(one)
    worst = 0.0
    for k in one:
        a, b = np.asarray(one[k], np.float64), np.asarray(two[k], np.float64)
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)))
    moved = float(np.abs(np.asarray(one["fc.weight"]) - np.asarray(params["fc"]["weight"])).max())
    print(f"2 devices vs 1 after 2 steps: worst relative difference {worst:.2e}; fc.weight moved {moved:.2e}")
    assert worst <= 1e-10 and moved > 1e-3, (worst, moved)
    assert int(one["bn.num_batches_tracked"]) == int(two["bn.num_batches_tracked"]) == 2
''')


def test_converted_model_data_parallel_equals_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 devices vs 1" in r.stdout
