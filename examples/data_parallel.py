"""The same training code on 1 and on N devices (data parallelism with JAX sharding),
and a throughput-versus-device-count figure.

    python examples/data_parallel.py                 # 8 simulated CPU devices
    python examples/data_parallel.py --devices 0     # the real devices (e.g. GPUs)

Simulated CPU devices (``--xla_force_host_platform_device_count``) all share this
machine's cores, so on a CPU the figure shows the cost of partitioning, not a speed-up.
"""

import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (0: use the real ones)")
parser.add_argument("--plot", default="benchmarks/scaling.png")
args = parser.parse_args()
if args.devices and "jax" not in sys.modules:  # must be set before JAX starts
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from funcnets import data, optim, parallel, recipes, train  # noqa: E402
from funcnets.models import LeNet  # noqa: E402
from funcnets.timing import interleaved  # noqa: E402


def main() -> None:
    devices = jax.devices()
    print(f"{len(devices)} devices: {devices[0].platform} ({devices[0].device_kind})")
    split = data.load_digits()
    model = LeNet()
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.adamw(2e-3, weight_decay=1e-4)
    accs = {}
    for name, dev in (("1 device", "1"), (f"{len(devices)} devices", "all")):
        _, history = recipes.fit(model, params, state, split, opt, epochs=5, batch_size=64, devices=dev, progress=False)
        accs[name] = history[-1]
        print(f"{name:>10}: loss {history[-1]['loss']:.6f}, held-out accuracy {history[-1]['test_accuracy']:.2%}")
    print("(float32: equal up to rounding, which 110 Adam steps amplify; tests/test_parallel.py shows\n"
          " agreement to 1e-12 in float64 and 1e-6 for 20 float32 LeNet steps)")

    # throughput of one train step (global batch 256) against the number of devices
    batch = (jnp.asarray(np.random.default_rng(0).random((256, 1, 32, 32), np.float32)), jnp.zeros(256, jnp.int32))
    step = train.make_train_step(train.supervised_loss(model), opt, donate=False)
    counts = [n for n in (1, 2, 4, 8, 16) if n <= len(devices)]
    fns = {}
    for n in counts:
        mesh = parallel.data_mesh(devices[:n])
        ts = parallel.distribute(train.create_train_state(params, state, opt, jax.random.PRNGKey(0)), mesh)
        b = parallel.shard_batch(batch, mesh)
        fns[n] = lambda ts=ts, b=b: step(ts, b)
    ms = interleaved(fns, repeats=10)
    print("\ndevices  step (ms)  images/s")
    for n in counts:
        print(f"{n:>7}  {ms[n]:9.2f}  {256 / ms[n] * 1e3:8.0f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(counts, [256 / ms[n] * 1e3 for n in counts], marker="o")
    ax.set(xlabel="devices", ylabel="images / s", xscale="log", xticks=counts, xticklabels=counts,
           title=f"LeNet train step, global batch 256\n{devices[0].platform}: {devices[0].device_kind}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
