"""PyTorch's MNIST example (pytorch/examples, mnist/main.py) on tinygrad_mnist.

The network (`Net`) and the `train` and `test` loops are PyTorch's, line for line; only the
imports differ: `tinygrad_mnist` takes the place of `torch`. What differs is in `main`, because
tinygrad_mnist has no torchvision and no DataLoader (a small `Loader` over the bundled sample or
full MNIST stands in) and no Adadelta (Adam instead); `torch.device` and `torch.cuda` exist
and say "cpu".

    python examples/pytorch_mnist.py [--data sample|DIR] [--epochs N] [--dry-run] [--limit N]
"""

import argparse
import math

import numpy as np

import tinygrad_mnist as torch
import tinygrad_mnist.nn as nn
import tinygrad_mnist.nn.functional as F
import tinygrad_mnist.optim as optim
from tinygrad_mnist import data as mnist_data
from tinygrad_mnist.optim.lr_scheduler import StepLR


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print(
                "Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}".format(
                    epoch,
                    batch_idx * len(data),
                    len(train_loader.dataset),
                    100.0 * batch_idx / len(train_loader),
                    loss.item(),
                )
            )
            if args.dry_run:
                break


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)

    print(
        "\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n".format(
            test_loss, correct, len(test_loader.dataset), 100.0 * correct / len(test_loader.dataset)
        )
    )
    return correct / len(test_loader.dataset)


class Loader:
    """What the loops need of a DataLoader: (images, labels) tensor batches, len() (the number
    of batches) and `.dataset` (whose len() is the number of examples)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool):
        self.dataset = mnist_data.preprocess(images, normalize=True)  # float32 (N, 1, 28, 28)
        self.labels = labels.astype(np.int64)
        self.batch_size, self.shuffle, self.epoch = batch_size, shuffle, 0

    def __iter__(self):
        self.epoch += 1
        batches = mnist_data.batches(
            self.dataset, self.labels, self.batch_size, shuffle=self.shuffle, seed=self.epoch
        )
        for x, y in batches:
            yield torch.tensor(x), torch.tensor(y)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)


def main():
    parser = argparse.ArgumentParser(description="PyTorch's MNIST example on tinygrad_mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--gamma", type=float, default=0.7, help="learning rate step gamma")
    parser.add_argument("--dry-run", action="store_true", help="one batch per epoch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--data", default="sample", help="'sample' (default) or a folder of MNIST")
    parser.add_argument("--limit", type=int, default=None, help="use only N training images")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mnist = mnist_data.load_sample() if args.data == "sample" else mnist_data.load_mnist(args.data)
    n = args.limit or len(mnist.train_labels)
    train_loader = Loader(mnist.train_images[:n], mnist.train_labels[:n], args.batch_size, True)
    test_loader = Loader(mnist.test_images, mnist.test_labels, args.test_batch_size, False)

    model = Net().to(device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)

    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch)
        test(model, device, test_loader)
        scheduler.step()


if __name__ == "__main__":
    main()
