"""The baseline: the textbook's NumPy layers (common/layers.py) and its training loop.

Layer objects with ``forward``/``backward`` that keep what they need in
``self``, a network holding them in order, plain SGD. Weights are float32 by
default, so that the comparison with float32 JAX is fair; ``dtype=np.float64``
(with float64 inputs) runs the book's code as the book does.
"""

from collections import OrderedDict

import numpy as np


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = None
        self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


def softmax(x):
    x = x - np.max(x, axis=1, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=1, keepdims=True)


class SoftmaxWithLoss:
    def __init__(self):
        self.y = self.t = None

    def forward(self, x, t):
        self.t, self.y = t, softmax(x)
        batch_size = self.y.shape[0]
        return -np.sum(np.log(self.y[np.arange(batch_size), t] + 1e-7)) / batch_size

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx / batch_size


class MultiLayerNet:
    """Affine -> Relu -> ... -> Affine -> SoftmaxWithLoss, the book's way."""

    def __init__(self, sizes, weight_init_std=0.01, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.params = {}
        self.layers = OrderedDict()
        n = len(sizes) - 1
        for i in range(1, n + 1):
            self.params[f"W{i}"] = (weight_init_std * rng.standard_normal(sizes[i - 1:i + 1])).astype(dtype)
            self.params[f"b{i}"] = np.zeros(sizes[i], dtype)
            self.layers[f"Affine{i}"] = Affine(self.params[f"W{i}"], self.params[f"b{i}"])
            if i < n:
                self.layers[f"Relu{i}"] = Relu()
        self.last_layer = SoftmaxWithLoss()
        self.n = n

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        return np.sum(np.argmax(self.predict(x), axis=1) == t) / float(x.shape[0])

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for i in range(1, self.n + 1):
            grads[f"W{i}"] = self.layers[f"Affine{i}"].dW
            grads[f"b{i}"] = self.layers[f"Affine{i}"].db
        return grads


def train_steps(net, x_train, t_train, batch_size, steps, learning_rate=0.1, seed=0):
    """The book's loop: mini-batch, gradient, SGD update, ``steps`` times."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch_mask = rng.choice(x_train.shape[0], batch_size)
        grads = net.gradient(x_train[batch_mask], t_train[batch_mask])
        for key in net.params:
            net.params[key] -= learning_rate * grads[key]


def train_recipe(net, data, iters_num=10_000, batch_size=100, learning_rate=0.1, seed=0):
    """The book's ``train_neuralnet.py`` (sec. 5.7.4): SGD steps, and after every epoch the
    accuracy on the whole training and test sets; returns the per-epoch ``(train, test)``."""
    (x_train, t_train), (x_test, t_test) = data
    rng = np.random.default_rng(seed)
    iter_per_epoch = max(x_train.shape[0] // batch_size, 1)
    curve = []
    for i in range(iters_num):
        batch_mask = rng.choice(x_train.shape[0], batch_size)
        grads = net.gradient(x_train[batch_mask], t_train[batch_mask])
        for key in net.params:
            net.params[key] -= learning_rate * grads[key]
        if (i + 1) % iter_per_epoch == 0 or i + 1 == iters_num:
            curve.append((net.accuracy(x_train, t_train), net.accuracy(x_test, t_test)))
    return curve
