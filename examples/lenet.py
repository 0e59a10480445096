"""The tutorial's "Neural Networks" section with funcnets' LeNet.

Build the net, list its parameters, forward a random 1×1×32×32 input, compute an MSE
loss against a random target, look at the graph of the loss, see conv1.bias's gradient
before (there is none: gradients are returned, not stored) and after the backward pass,
and take one SGD step with lr=0.01.

    python examples/lenet.py
"""

import jax
import optax

from funcnets import losses, optim
from funcnets.autograd import graph
from funcnets.models import LeNet


def main() -> None:
    net = LeNet()
    print(net)
    params, state = net.init(jax.random.PRNGKey(0))
    print("\nlen(params) =", len(net.parameters(params)))
    print(net.summary(params))

    k_in, k_target = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(k_in, (1, 1, 32, 32))
    out, _ = net(params, state, x)
    print("\nout =", out)

    target = jax.random.normal(k_target, (10,)).reshape(1, -1)  # same shape as the output

    def loss_fn(p):
        return losses.mse_loss(net(p, state, x)[0], target)

    loss = loss_fn(params)
    print("loss =", float(loss))
    print("\nThe loss's graph (MSE -> linear -> relu ..., the grad_fn.next_functions analog), top levels:")
    print("\n".join(str(graph(loss_fn, params)).splitlines()[:14]), "\n  ...")

    print("\nconv1.bias.grad before backward: None (funcnets never stores gradients; nothing to zero)")
    grads = jax.grad(loss_fn)(params)
    print("conv1.bias.grad after backward:", grads["conv1"]["bias"])

    opt = optim.sgd(lr=0.01)  # optimizer = optim.SGD(net.parameters(), lr=0.01)
    updates, _ = opt.update(grads, opt.init(params), params)
    params = optax.apply_updates(params, updates)  # optimizer.step()
    print("loss after one SGD step:", float(loss_fn(params)), "(was", float(loss), ")")


if __name__ == "__main__":
    main()
