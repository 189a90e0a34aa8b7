"""PyTorch on the CPU: the same network, loss and SGD, one step at a time."""

import torch


def make(sizes, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def train_steps(net, x_train, t_train, batch_size, steps, learning_rate=0.1, seed=0):
    optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch_mask = torch.randint(0, x_train.shape[0], (batch_size,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x_train[batch_mask]), t_train[batch_mask])
        loss.backward()
        optimizer.step()


def train_recipe(net, data, iters_num=10_000, batch_size=100, learning_rate=0.1, seed=0):
    """The book's recipe as a PyTorch loop: SGD steps, and after every epoch the accuracy on
    the whole training and test sets; returns the per-epoch ``(train, test)``."""
    (x_train, t_train), (x_test, t_test) = data
    optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    iter_per_epoch = max(x_train.shape[0] // batch_size, 1)

    def accuracy(x, t):
        with torch.no_grad():
            return (net(x).argmax(dim=1) == t).float().mean().item()

    curve = []
    for i in range(iters_num):
        batch_mask = torch.randint(0, x_train.shape[0], (batch_size,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x_train[batch_mask]), t_train[batch_mask]).backward()
        optimizer.step()
        if (i + 1) % iter_per_epoch == 0 or i + 1 == iters_num:
            curve.append((accuracy(x_train, t_train), accuracy(x_test, t_test)))
    return curve
