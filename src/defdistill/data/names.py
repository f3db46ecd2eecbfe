"""The data sets' names and descriptions, importable without torch (the CLI's parsers use them)."""

DATASETS = ("mnist", "cifar10", "cifar10-subset")

# What each data set is, for reports and tables (a name not listed describes itself).
DESCRIPTIONS: dict[str, str] = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar10-subset": "CIFAR-10 subset (5,085 train / 1,017 test)",
}
