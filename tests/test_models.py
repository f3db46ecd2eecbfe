import pytest
import torch
from torch import nn

from defdistill.models import available_models, build_model, output_layer, register_model


def test_registry_has_paper_networks():
    assert {"mnist_cnn", "cifar10_cnn"} <= set(available_models())


@pytest.mark.parametrize(
    ("name", "shape", "params"),
    [
        # conv 32,32,64,64 + FC 1024->200->200->10
        ("mnist_cnn", (1, 28, 28), 320 + 9248 + 18496 + 36928 + 205000 + 40200 + 2010),
        ("cifar10_cnn", (3, 32, 32), 1792 + 36928 + 73856 + 147584 + 819456 + 65792 + 2570),
    ],
)
def test_paper_architectures_return_logits_of_the_right_shape(name, shape, params):
    model = build_model(name, shape[0], shape[1], 10)
    assert sum(p.numel() for p in model.parameters()) == params
    out = model.eval()(torch.rand(4, *shape))
    assert out.shape == (4, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities


def test_number_of_classes_follows_the_data():
    assert output_layer(build_model("mnist_cnn", 1, 28, 3)).out_features == 3


def test_register_custom_model_and_reject_duplicates():
    @register_model("tiny_test_mlp")
    def tiny(in_channels, image_size, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))

    assert build_model("tiny_test_mlp", 1, 4, 2)(torch.rand(1, 1, 4, 4)).shape == (1, 2)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_mlp")(tiny)
    with pytest.raises(ValueError, match="unknown model 'resnet50'; choose one of .*mnist_cnn"):
        build_model("resnet50", 1, 28, 10)
