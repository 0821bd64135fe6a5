"""BN recalibration and top-1 evaluation on real Fashion-MNIST."""

import pytest
import torch
import torch.nn as nn

from nastools.data import iter_batches, load_splits
from nastools.supernet import Supernet
from nastools.train import calibration_batches, evaluate_top1, recalibrate_and_evaluate, recalibrate_bn

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def splits():
    return load_splits("fashion-mnist")


@pytest.fixture(scope="module")
def net(fmnist):
    torch.manual_seed(0)
    return Supernet(fmnist)


class ConstantClassifier(nn.Module):
    """Always predicts one class."""

    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), 10)
        out[:, self.cls] = 1.0
        return out


def test_top1_of_a_constant_classifier_is_the_class_frequency(splits):
    # the Fashion-MNIST test set has exactly 1000 images of each of the 10 classes
    assert evaluate_top1(ConstantClassifier(3), splits.test, batch_size=777) == pytest.approx(0.1)
    first = splits.test.labels[:300]
    assert evaluate_top1(ConstantClassifier(7), splits.test, max_images=300) == pytest.approx(float((first == 7).float().mean()))


def test_recalibration_computes_the_average_statistics_of_the_active_subnet(net, splits, fmnist):
    arch = fmnist.sample(3)
    net.set_active(arch)
    net.train()
    batches = list(iter_batches(splits.train, 100, max_images=400))
    c = arch.stem
    # what the stem's BN sees: the stem conv's output at the arch's resolution
    with torch.no_grad():
        feats = [net.stem.conv(torch.nn.functional.interpolate(x, size=(arch.resolution,) * 2, mode="bilinear"), c) for x, _ in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    bn = net.stem.bn
    bn.momentum = 0.1
    seen = recalibrate_bn(net, batches)
    assert seen == 400
    torch.testing.assert_close(bn.running_mean[:c], mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var[:c], var, rtol=1e-4, atol=1e-5)
    # unused channels are reset, the momentum and training mode are restored
    if c < bn.num_features:
        assert torch.all(bn.running_mean[c:] == 0) and torch.all(bn.running_var[c:] == 1)
    assert bn.momentum == 0.1 and net.training and all(m.training for m in net.modules())


def test_recalibrated_supernet_and_extracted_subnet_agree(net, splits, fmnist):
    arch = fmnist.sample_near_flops(8e6, 1)
    net.set_active(arch, dropout=0.5, drop_connect=0.5)  # recalibration must not apply them
    recalibrate_bn(net, calibration_batches(splits.train, 100, 200, seed=1))
    sub = net.extract()
    recalibrate_bn(sub, calibration_batches(splits.train, 100, 200, seed=1))
    net.eval()
    sub.eval()
    x, _ = next(iter_batches(splits.val, 64))
    from nastools.train.evaluate import prepare_input

    with torch.no_grad():
        torch.testing.assert_close(net(x), sub(prepare_input(sub, x)), rtol=1e-4, atol=1e-4)
    a = evaluate_top1(net, splits.val, max_images=300)
    b = evaluate_top1(sub, splits.val, max_images=300)
    assert a == b
    net.train()


def test_recalibration_matters_for_an_untrained_supernet(net, splits, fmnist):
    # stale running statistics (default 0/1) vs recalibrated: the logits must differ
    arch = fmnist.min_arch()
    net.set_active(arch)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    net.eval()
    x, _ = next(iter_batches(splits.val, 32))
    with torch.no_grad():
        before = net(x)
    acc = recalibrate_and_evaluate(net, splits.train, splits.val, calib_images=200, max_images=200)
    with torch.no_grad():
        after = net(x)
    assert 0.0 <= acc <= 1.0
    assert not torch.allclose(before, after)
    net.train()


def test_recalibration_needs_batches(net):
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(net, [])
