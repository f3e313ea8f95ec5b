"""StarGAN v2 objectives as pure functions returning ``(loss, stats)``.

Discriminator: non-saturating adversarial loss on real images of their own domain and on
translations into the target domain, plus the R1 penalty 0.5 E||grad_x D(x)||^2 on reals.
Generator: adversarial + lambda_sty * style reconstruction |E(G(x, s), y~) - s|
- lambda_ds * diversity |G(x, s1) - G(x, s2)| + lambda_cyc * cycle |G(G(x, s), E(x, y)) - x|.
The style s comes from the mapping network (latent-guided: ``z``) or the style encoder
(reference-guided: ``x_ref``). lambda_ds decays linearly to 0 (:func:`decay_ds`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrgen.gan.stargan_nets import StarGANNets


def adversarial_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of the logits against a constant target (1 real, 0 fake)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def r1_penalty(d_out: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """0.5 * mean over the batch of ||d D(x) / d x||^2 (x_in must require grad); >= 0."""
    (grad,) = torch.autograd.grad(d_out.sum(), x_in, create_graph=True)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


def ds_weight(initial: float, ds_iter: int, step: int) -> float:
    """lambda_ds after ``step`` steps of linear decay from ``initial`` to 0 over ``ds_iter``."""
    return max(0.0, initial * (1.0 - step / ds_iter)) if ds_iter > 0 else 0.0


def decay_ds(current: float, initial: float, ds_iter: int) -> float:
    """One step of the decay (StarGAN v2 subtracts initial / ds_iter per step), floored at 0."""
    return max(0.0, current - initial / ds_iter) if ds_iter > 0 else 0.0


def target_style(
    nets: StarGANNets,
    y_trg: torch.Tensor,
    z: torch.Tensor | None = None,
    x_ref: torch.Tensor | None = None,
) -> torch.Tensor:
    """The style code of domains ``y_trg``: F(z, y) (latent) or E(x_ref, y) (reference)."""
    if (z is None) == (x_ref is None):
        raise ValueError("give exactly one of z (latent-guided) or x_ref (reference-guided)")
    if z is not None:
        return nets.mapping_network(z, y_trg)
    return nets.style_encoder(x_ref, y_trg)


def discriminator_loss(
    nets: StarGANNets,
    x_real: torch.Tensor,
    y_org: torch.Tensor,
    y_trg: torch.Tensor,
    *,
    z_trg: torch.Tensor | None = None,
    x_ref: torch.Tensor | None = None,
    lambda_reg: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """real + fake adversarial terms + lambda_reg * R1 (stats: real, fake, reg)."""
    x_real = x_real.detach().requires_grad_(True)
    out = nets.discriminator(x_real, y_org)
    loss_real = adversarial_loss(out, 1.0)
    loss_reg = r1_penalty(out, x_real)
    with torch.no_grad():
        x_fake = nets.generator(x_real, target_style(nets, y_trg, z_trg, x_ref))
    loss_fake = adversarial_loss(nets.discriminator(x_fake, y_trg), 0.0)
    loss = loss_real + loss_fake + lambda_reg * loss_reg
    return loss, {
        "real": loss_real.item(),
        "fake": loss_fake.item(),
        "reg": loss_reg.item(),
    }


def generator_loss(
    nets: StarGANNets,
    x_real: torch.Tensor,
    y_org: torch.Tensor,
    y_trg: torch.Tensor,
    *,
    z_trgs: tuple[torch.Tensor, torch.Tensor] | None = None,
    x_refs: tuple[torch.Tensor, torch.Tensor] | None = None,
    lambda_sty: float = 1.0,
    lambda_ds: float = 2.0,
    lambda_cyc: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """adv + lambda_sty * sty - lambda_ds * ds + lambda_cyc * cyc (stats: adv, sty, ds, cyc)."""
    if (z_trgs is None) == (x_refs is None):
        raise ValueError("give exactly one of z_trgs (latent) or x_refs (reference) pairs")
    first, second = z_trgs if z_trgs is not None else x_refs

    def style(source: torch.Tensor) -> torch.Tensor:
        if z_trgs is not None:
            return target_style(nets, y_trg, z=source)
        return target_style(nets, y_trg, x_ref=source)

    s_trg = style(first)
    x_fake = nets.generator(x_real, s_trg)
    loss_adv = adversarial_loss(nets.discriminator(x_fake, y_trg), 1.0)
    loss_sty = (nets.style_encoder(x_fake, y_trg) - s_trg).abs().mean()
    x_fake2 = nets.generator(x_real, style(second)).detach()
    loss_ds = (x_fake - x_fake2).abs().mean()
    x_rec = nets.generator(x_fake, nets.style_encoder(x_real, y_org))
    loss_cyc = (x_rec - x_real).abs().mean()
    loss = loss_adv + lambda_sty * loss_sty - lambda_ds * loss_ds + lambda_cyc * loss_cyc
    return loss, {
        "adv": loss_adv.item(),
        "sty": loss_sty.item(),
        "ds": loss_ds.item(),
        "cyc": loss_cyc.item(),
    }
