import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads

from funcnets import autograd
from funcnets.autograd import backward, graph, jacobian, my_relu, relu
from helpers import MyReLU, assert_close, to_np


def q(a, b):
    return 3 * a**3 - b**2


def test_tutorial_values():
    a, b = jnp.array([2.0, 3.0]), jnp.array([6.0, 4.0])
    ga, gb = backward(q, a, b, gradient=jnp.ones(2))
    np.testing.assert_array_equal(ga, [36.0, 81.0])
    np.testing.assert_array_equal(gb, [-12.0, -8.0])
    np.testing.assert_array_equal(ga, 9 * a**2)
    np.testing.assert_array_equal(gb, -2 * b)


def test_backward_matches_torch_with_external_gradient(x64):
    rng = np.random.default_rng(0)
    a, b, v = rng.normal(size=(3, 5))
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    q(ta, tb).backward(gradient=torch.tensor(v))
    ga, gb = backward(q, jnp.asarray(a), jnp.asarray(b), gradient=jnp.asarray(v))
    assert_close(ga, to_np(ta.grad), 1e-12, "a.grad")
    assert_close(gb, to_np(tb.grad), 1e-12, "b.grad")


def test_backward_errors_like_torch():
    a = jnp.ones(2)
    with pytest.raises(RuntimeError, match="only for scalar outputs.*gradient="):
        backward(lambda a: a * 2, a)
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the output has shape \(2,\)"):
        backward(lambda a: a * 2, a, gradient=jnp.ones(3))
    # a scalar output needs no gradient, as in torch
    (g,) = backward(lambda a: jnp.sum(a**2), jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(g, [2.0, 4.0])


def test_jacobian_and_vjp_jvp(x64):
    a = jnp.array([2.0, 3.0])
    f = lambda a: 3 * a**3  # noqa: E731
    expected = np.diag(9 * np.asarray(a) ** 2)
    np.testing.assert_allclose(jacobian(f, a), expected)
    np.testing.assert_allclose(jacobian(f, a, strategy="forward-mode"), expected)
    ja, jb = jacobian(q, (a, jnp.array([6.0, 4.0])))
    np.testing.assert_allclose(jb, np.diag([-12.0, -8.0]))
    out, vj = autograd.vjp(f, a, jnp.ones(2))
    np.testing.assert_allclose(vj, [36.0, 81.0])
    _, jv = autograd.jvp(f, a, jnp.ones(2))
    np.testing.assert_allclose(jv, [36.0, 81.0])
    np.testing.assert_allclose(autograd.hessian(lambda a: jnp.sum(a**3), a), np.diag(6 * np.asarray(a)))
    with pytest.raises(ValueError, match="strategy"):
        jacobian(f, a, strategy="sideways")
    torch_j = torch.autograd.functional.jacobian(lambda t: 3 * t**3, torch.tensor([2.0, 3.0], dtype=torch.float64))
    assert_close(jacobian(f, a), to_np(torch_j), 1e-12, "jacobian")


def test_check_grads_helpers_and_relus(x64):
    x = jnp.array([-1.5, -0.3, 0.4, 2.0])  # away from the kink, where finite differences hold
    check_grads(my_relu, (x,), order=1, modes=["rev"])
    check_grads(relu, (x,), order=2)
    check_grads(lambda a, b: jnp.sum(backward(q, a, b, gradient=jnp.ones(4))[0]), (x, x), order=1)


def test_relu_gradients_at_zero_match_torch(x64):
    x = np.array([-2.0, -0.0, 0.0, 0.0, 1e-300, 3.0])
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    tx = torch.tensor(x, requires_grad=True)
    MyReLU.apply(tx).backward(torch.tensor(g))
    tx2 = torch.tensor(x, requires_grad=True)
    torch.relu(tx2).backward(torch.tensor(g))
    (mine,) = backward(my_relu, jnp.asarray(x), gradient=jnp.asarray(g))
    (std,) = backward(relu, jnp.asarray(x), gradient=jnp.asarray(g))
    np.testing.assert_array_equal(mine, to_np(tx.grad))
    np.testing.assert_array_equal(std, to_np(tx2.grad))
    # the facts themselves: MyReLU passes the gradient at exactly 0, torch.relu does not
    np.testing.assert_array_equal(mine[1:4], g[1:4])
    np.testing.assert_array_equal(std[1:4], 0.0)
    np.testing.assert_array_equal(my_relu(jnp.asarray(x)), to_np(MyReLU.apply(torch.tensor(x))))


def test_graph_shows_operations_back_to_inputs():
    g = graph(q, jnp.array([2.0, 3.0]), jnp.array([6.0, 4.0]))
    text = str(g)
    lines = text.splitlines()
    assert lines[0].startswith("#1 sub") and "SubBackward0" in lines[0]
    assert "MulBackward0" in text and "integer_pow[y=3]" in text and "integer_pow[y=2]" in text
    assert "a (2,)  (AccumulateGrad)" in text and "b (2,)  (AccumulateGrad)" in text
    assert g.operations == ["integer_pow", "mul", "integer_pow", "sub"]
    relus = str(graph(lambda x: jnp.sum(relu(x) * my_relu(x)), jnp.ones(2)))
    assert "custom_jvp_call[relu]" in relus and "ReluBackward0" in relus and "MyReLUBackward" in relus
    # a shared subexpression is drawn once
    shared = str(graph(lambda x: (x * 2) + (x * 2) * 0 + jnp.sin(x * 2), jnp.ones(2)))
    assert shared.count("mul") >= 2


def test_graph_names_pytree_leaves():
    text = str(graph(lambda p, x: jnp.sum(p["w"] * x), {"w": jnp.ones(3)}, jnp.ones(3)))
    assert "p.w (3,)" in text and "x (3,)" in text
