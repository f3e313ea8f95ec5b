"""StarGAN v2 / DCGAN networks: shapes for 2 and 3 domains at 16 / 32 px; losses; ds schedule."""

import math

import pytest
import torch

from cxrgen.errors import ConfigError
from cxrgen.gan.config import StarGANTrainConfig
from cxrgen.gan.dcgan import DCGANDiscriminator, DCGANGenerator
from cxrgen.gan.stargan_losses import (
    decay_ds,
    discriminator_loss,
    ds_weight,
    generator_loss,
    r1_penalty,
)
from cxrgen.gan.stargan_nets import build_stargan, check_generator_geometry, trunk_downsamplings
from cxrgen.gan.stargan_train import architecture
from cxrgen.training.step import EMA

TINY = dict(base_dim=8, max_conv_dim=16, style_dim=8, latent_dim=4, mapping_dim=16)


def nets_for(k, size, n_down=2):
    cfg = StarGANTrainConfig(**TINY, g_downsamplings=n_down)
    torch.manual_seed(0)
    return build_stargan(architecture(cfg, k, size, size))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("size", [16, 32])
def test_stargan_shapes(k, size):
    nets = nets_for(k, size)
    b = 3
    x = torch.randn(b, 1, size, size)
    y = torch.arange(b) % k
    z = torch.randn(b, 4)
    s = nets.mapping_network(z, y)
    assert s.shape == (b, 8)
    assert nets.style_encoder(x, y).shape == (b, 8)
    assert nets.generator(x, s).shape == (b, 1, size, size)
    assert nets.discriminator(x, y).shape == (b,)
    assert len(nets.mapping_network.heads) == k and len(nets.style_encoder.heads) == k
    assert nets.discriminator.logits.out_channels == k
    # the per-domain heads really select: domain 1's style differs from domain 0's
    s0 = nets.mapping_network(z, torch.zeros(b, dtype=torch.long))
    s1 = nets.mapping_network(z, torch.ones(b, dtype=torch.long))
    assert not torch.allclose(s0, s1)
    n, fh, fw = trunk_downsamplings(size, size)
    assert (n, fh, fw) == (int(math.log2(size)) - 2, 4, 4)


def test_generator_bottleneck_and_geometry_errors():
    nets = nets_for(2, 32, n_down=3)
    assert len(nets.generator.encode) == 3 + 2 and len(nets.generator.decode) == 5
    check_generator_geometry(24, 24, 3)
    with pytest.raises(ConfigError, match=r"24x24 is not divisible by 2\*\*g_downsamplings = 16"):
        check_generator_geometry(24, 24, 4)
    # a non-power-of-two side: the trunk stops at an odd side and its last conv covers it
    assert trunk_downsamplings(24, 24) == (3, 3, 3)
    nets = build_stargan(architecture(StarGANTrainConfig(**TINY, g_downsamplings=3), 2, 24, 24))
    assert nets.discriminator(torch.randn(2, 1, 24, 24), torch.tensor([0, 1])).shape == (2,)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("size", [16, 32])
def test_dcgan_shapes(k, size):
    torch.manual_seed(0)
    g = DCGANGenerator(
        (size, size), k, latent_dim=6, embed_dim=3, base_dim=8, max_conv_dim=16, n_up=2
    )
    d = DCGANDiscriminator((size, size), k, base_dim=8, max_conv_dim=16, n_up=2)
    y = torch.arange(4) % k
    x = g(torch.randn(4, 6), y)
    assert x.shape == (4, 1, size, size) and x.abs().max() <= 1
    assert d(x, y).shape == (4,)
    with pytest.raises(ConfigError, match="not divisible by 2\\*\\*upsamplings = 8"):
        DCGANGenerator((20, 20), k, n_up=3)


def test_losses_are_finite_and_r1_non_negative():
    nets = nets_for(3, 16)
    x = torch.randn(4, 1, 16, 16)
    y, y_trg = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 2])
    z, z2 = torch.randn(4, 4), torch.randn(4, 4)
    refs = (torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16))
    for kwargs in ({"z_trg": z}, {"x_ref": refs[0]}):
        loss, stats = discriminator_loss(nets, x, y, y_trg, lambda_reg=1.0, **kwargs)
        assert torch.isfinite(loss) and stats["reg"] >= 0
        assert set(stats) == {"real", "fake", "reg"}
        loss.backward()
    for kwargs in ({"z_trgs": (z, z2)}, {"x_refs": refs}):
        loss, stats = generator_loss(nets, x, y, y_trg, lambda_ds=2.0, **kwargs)
        assert torch.isfinite(loss) and set(stats) == {"adv", "sty", "ds", "cyc"}
        assert all(math.isfinite(v) for v in stats.values()) and stats["ds"] > 0
        # the total is the documented combination
        expected = stats["adv"] + stats["sty"] - 2.0 * stats["ds"] + stats["cyc"]
        assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        discriminator_loss(nets, x, y, y_trg, z_trg=z, x_ref=refs[0])


def test_r1_is_half_the_squared_input_gradient():
    x = torch.randn(5, 1, 4, 4, requires_grad=True)
    w = torch.randn(1, 1, 4, 4)
    out = (x * w).flatten(1).sum(1)  # gradient wrt each x is w
    assert r1_penalty(out, x).item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-6)
    assert r1_penalty(x.flatten(1).sum(1) * 0, x).item() == 0


def test_ds_weight_decays_linearly_to_zero():
    assert [ds_weight(2.0, 4, s) for s in range(6)] == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
    value, seen = 2.0, []
    for _ in range(6):
        seen.append(value)
        value = decay_ds(value, 2.0, 4)
    assert seen == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0, 0.0])
    steps = 1000
    value = 2.0
    for s in range(steps):
        assert value == pytest.approx(ds_weight(2.0, steps, s), abs=1e-9)
        value = decay_ds(value, 2.0, steps)
    assert value == 0.0


def test_ema_is_a_fixed_beta_average():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, 0.9)
    before = ema.averaged.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update()
    assert torch.allclose(ema.averaged.weight, 0.9 * before + 0.1 * net.weight)
    assert not ema.averaged.weight.requires_grad
