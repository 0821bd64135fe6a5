import random

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nastools.errors import NastoolsError
from nastools.supernet import StaticSubnet, Supernet, build_block
from nastools.supernet.dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear

torch.set_num_threads(2)

ALLOWED_STATIC = (
    StaticSubnet,
    nn.Sequential,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Linear,
    nn.SiLU,
    nn.ReLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Dropout,
    nn.AvgPool2d,
    nn.Identity,
)


@pytest.fixture(scope="module")
def fmnist_net(fmnist):
    torch.manual_seed(0)
    net = Supernet(fmnist)
    _randomise_bn(net)
    return net


@pytest.fixture(scope="module")
def attentive_net(attentivenas_small):
    torch.manual_seed(0)
    net = Supernet(attentivenas_small)
    _randomise_bn(net)
    return net


def _randomise_bn(net):
    # non-trivial running statistics and affine terms, so that copying them matters
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, (DynamicConv2d, DynamicLinear)) and m.bias is not None:
                m.bias.uniform_(-0.2, 0.2)


def _archs(space, n, seed):
    rng = random.Random(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]


def _check_parity(net, arch, batch=3):
    net.set_active(arch)
    net.eval()
    x = torch.randn(batch, net.space.input_channels, arch.resolution, arch.resolution)
    with torch.no_grad():
        want = net(x)
        sub = net.extract()
        got = sub(x)
    assert want.shape == (batch, net.space.num_classes)
    assert (want - got).abs().max().item() <= 1e-5
    return sub


def test_fmnist_extracted_equals_supernet(fmnist_net, fmnist):
    for arch in _archs(fmnist, 40, seed=1):
        _check_parity(fmnist_net, arch)


def test_attentivenas_extracted_equals_supernet(attentive_net, attentivenas_small):
    for arch in _archs(attentivenas_small, 10, seed=2):
        _check_parity(attentive_net, arch, batch=2)


def _flops_params(sub, arch, channels):
    x = torch.randn(1, channels, arch.resolution, arch.resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        sub.eval()(x)
    return counter.get_total_flops() // 2, sum(p.numel() for p in sub.parameters())


def test_analytic_cost_matches_torch_counter(fmnist_net, fmnist, attentive_net, attentivenas_small):
    for net, sp, n in ((fmnist_net, fmnist, 30), (attentive_net, attentivenas_small, 8)):
        for arch in _archs(sp, n, seed=3):
            sub = net.extract(arch)
            assert _flops_params(sub, arch, sp.input_channels) == sp.cost(arch), arch


def test_extracted_model_is_plain_and_independent(fmnist_net, fmnist):
    arch = fmnist.sample(11)
    sub = fmnist_net.extract(arch)
    for m in sub.modules():
        assert isinstance(m, ALLOWED_STATIC) or type(m).__module__ == "nastools.supernet.static", type(m)
        assert not isinstance(m, (DynamicConv2d, DynamicBatchNorm2d, DynamicLinear))
    shared = {p.data_ptr() for p in fmnist_net.parameters()}
    assert not any(p.data_ptr() in shared for p in sub.parameters())  # copies, not views
    before = next(fmnist_net.parameters()).clone()
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
    assert torch.equal(next(fmnist_net.parameters()), before)
    assert sub.arch == arch and sub.input_shape == (1, arch.resolution, arch.resolution)


def test_extract_other_arch_keeps_active(fmnist_net, fmnist):
    a, b = fmnist.sample(21), fmnist.sample(22)
    fmnist_net.set_active(a)
    fmnist_net.extract(b)
    assert fmnist_net.active_arch == a


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_backward_any_batch(fmnist_net, fmnist, batch, mode):
    arch = fmnist.sample(batch)
    fmnist_net.set_active(arch, dropout=0.1, drop_connect=0.1)
    fmnist_net.train(mode == "train")
    x = torch.randn(batch, 1, arch.resolution, arch.resolution, requires_grad=True)
    y = fmnist_net(x)
    assert y.shape == (batch, 10) and torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    fmnist_net.zero_grad(set_to_none=True)
    fmnist_net.set_active(arch)


def test_forward_resizes_to_arch_resolution(fmnist_net, fmnist):
    arch = fmnist.max_arch().replace(resolution=28)
    fmnist_net.set_active(arch)
    fmnist_net.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        y = fmnist_net(x)
        ref = fmnist_net(torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False))
    assert torch.allclose(y, ref)


def test_training_updates_only_active_slice(fmnist):
    torch.manual_seed(0)
    net = Supernet(fmnist)
    arch = fmnist.min_arch()
    net.set_active(arch)
    net.train()
    x = torch.randn(4, 1, 28, 28)
    net(x).sum().backward()
    w = net.stages[1][0].project_conv.weight  # max 32 out channels; min arch uses 16
    assert w.grad is not None
    assert w.grad[:16].abs().sum() > 0 and w.grad[16:].abs().sum() == 0
    unused = net.stages[1][3].project_conv.weight  # depth 1 of max 4: blocks 2-4 inactive
    assert unused.grad is None
    bn = net.stages[1][0].project_bn
    assert bn.running_mean[16:].abs().sum() == 0 and bn.running_mean[:16].abs().sum() > 0


@pytest.mark.parametrize("space", ["fmnist", "attentivenas_small"])
def test_every_weight_of_the_supernet_is_used_by_some_subnet(space, request):
    # once, every block of a stage with several widths held a shortcut convolution, though
    # only the stage's first block can change width: weights no subnet ever reached
    sp = request.getfixturevalue(space)
    torch.manual_seed(0)
    net = Supernet(sp)
    net.train()
    for arch in _archs(sp, 12, seed=1):
        net.set_active(arch)
        net(torch.randn(2, sp.input_channels, arch.resolution, arch.resolution)).sum().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == []


def test_a_checkpoint_with_the_old_unused_shortcuts_loads(fmnist, fmnist_net):
    from nastools.supernet.model import legacy_keys

    old = dict(fmnist_net.state_dict())
    for i, spec in enumerate(fmnist.stages):  # what the old layout also held
        if len(spec.widths) > 1:
            for j in range(1, max(spec.depths)):
                old[f"stages.{i}.{j}.shortcut_conv.weight"] = torch.randn(max(spec.widths), max(spec.widths), 1, 1)
    assert len(legacy_keys(old)) > 0 and legacy_keys(fmnist_net.state_dict()) == []
    net = Supernet(fmnist)
    net.load_state_dict(old)
    arch = fmnist.sample(3)
    x = torch.randn(2, 1, arch.resolution, arch.resolution)
    for m in (net, fmnist_net):
        m.set_active(arch)
        m.eval()
    with torch.no_grad():
        assert torch.equal(net(x), fmnist_net(x))
    with pytest.raises(RuntimeError, match="Unexpected"):  # any other stray key still fails
        net.load_state_dict({**old, "stages.0.0.extra.weight": torch.zeros(1)})


def test_kernel_three_is_centre_of_five(fmnist):
    torch.manual_seed(0)
    net = Supernet(fmnist)
    arch = fmnist.min_arch()  # kernel 3 everywhere
    sub = net.extract(arch)
    full = net.stages[0][0].dw_conv.weight
    assert torch.equal(sub.blocks[0].dw_conv.weight, full[: sub.blocks[0].dw_conv.weight.shape[0], :, 1:4, 1:4])


def test_set_active_rejects_foreign_arch(fmnist_net, attentivenas):
    with pytest.raises(NastoolsError, match="another search space"):
        fmnist_net.set_active(attentivenas.sample(0))


def test_build_block_runs_each_block_alone(fmnist):
    arch = fmnist.sample(4)
    for b in fmnist.blocks(arch):
        m = build_block(b).eval()
        x = torch.randn(1, b.in_chs, b.size, b.size)
        y = m(x)
        expected = (1, b.num_classes) if b.kind == "head" else (1, b.out_chs, b.out_size, b.out_size)
        assert tuple(y.shape) == expected


def test_static_registries_cover_the_space_names_and_list_them_for_an_unknown_one():
    from nastools.space import ACTIVATIONS, GATES
    from nastools.supernet import static

    assert set(static.ACTIVATIONS) == set(ACTIVATIONS) and set(static.GATES) == set(GATES)
    assert isinstance(static.make_act("hswish"), nn.Hardswish) and isinstance(static.make_gate("sigmoid"), nn.Sigmoid)
    with pytest.raises(ValueError, match="unknown activation 'gelu': expected one of swish, relu, hswish"):
        static.make_act("gelu")


def test_static_blocks_read_straight_through_absent_parts(fmnist_net, fmnist):
    # no expansion, no SE, identity shortcut: nn.Identity in their place, no None
    arch = fmnist.min_arch()
    sub = fmnist_net.extract(arch)
    first = sub.blocks[0]  # mb1: expand 1, no SE, 8 -> 8 channels at stride 1
    assert first.block.expand == 1 and not first.block.se and first.shortcut.is_identity
    for part in (first.expand_conv, first.expand_bn, first.expand_act, first.se, first.shortcut.pool, first.shortcut.conv):
        assert isinstance(part, nn.Identity)
    assert not any(v is None for m in sub.modules() for v in vars(m)["_modules"].values())
