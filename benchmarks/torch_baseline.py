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
