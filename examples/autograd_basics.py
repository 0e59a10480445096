"""The tutorial's autograd section: Q = 3a³ − b², Q.backward(gradient=v), and the graph.

    python examples/autograd_basics.py
"""

import jax.numpy as jnp
import numpy as np

from funcnets.autograd import backward, graph


def Q(a, b):
    return 3 * a**3 - b**2


def main() -> None:
    a = jnp.array([2.0, 3.0])  # torch.tensor([2., 3.], requires_grad=True)
    b = jnp.array([6.0, 4.0])
    v = jnp.array([1.0, 1.0])  # external_grad
    a_grad, b_grad = backward(Q, a, b, gradient=v)  # Q.backward(gradient=external_grad)
    print("a.grad =", a_grad)
    print("b.grad =", b_grad)
    print("9*a**2 == a.grad:", bool(np.all(9 * a**2 == a_grad)))
    print("-2*b == b.grad:", bool(np.all(-2 * b == b_grad)))
    assert np.array_equal(a_grad, [36.0, 81.0]) and np.array_equal(b_grad, [-12.0, -8.0])
    print("\nThe graph of Q, from the output back to the inputs (grad_fn / next_functions):")
    print(graph(Q, a, b))


if __name__ == "__main__":
    main()
