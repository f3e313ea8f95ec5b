"""Method ``stargan``: Med-StyleGAN2 translation of each image into the target domain.

The counterfactual keeps the image's own appearance where it can: its style is the style
encoder's code of the image itself *for the target domain*, E(x, Normal), moved toward a
latent-guided Normal style by the scale w:

    s = (1 - w) E(x, Normal) + w F(z, Normal),   z seeded by (seed, image row).

w = 0 is deterministic and image-specific (the natural counterfactual); w = 1 is StarGAN v2's
latent-guided translation. Each image's z has its own generator, so the result does not depend
on the batch size.
"""

from __future__ import annotations

import numpy as np
import torch

from cxrgen.errors import DataError
from cxrgen.gan.stargan_nets import StarGANModel
from cxrgen.training.seeding import Purpose, generator


def check_stargan_fits(model: StarGANModel, classes: tuple[str, ...], shape: tuple[int, int]):
    """DataError unless the translator was trained on these classes and this image size."""
    if tuple(model.classes) != tuple(classes):
        raise DataError(
            f"the StarGAN model was trained on domains {list(model.classes)} but the inverted "
            f"images have classes {list(classes)}: train it on the same split"
        )
    if tuple(model.image_size) != tuple(shape):
        raise DataError(
            f"the StarGAN model makes {model.image_size[0]}x{model.image_size[1]} images but "
            f"the store holds {shape[0]}x{shape[1]}: train it on the same store"
        )


@torch.no_grad()
def translate(
    model: StarGANModel,
    original: np.ndarray,
    rows: np.ndarray,
    target: int,
    scale: float,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    """Counterfactuals (B, H, W) in [0, 1] of images ``original`` (B, H, W) in [0, 1]."""
    x = (torch.from_numpy(original) * 2 - 1)[:, None].to(device)
    y = torch.full((len(x),), target, dtype=torch.long, device=device)
    style = model.nets.style_encoder(x, y)
    if scale:
        # SAMPLE stream, tag 4 (generate_synthetic uses tags 1-3 for its modes)
        z = [
            torch.randn(model.latent_dim, generator=generator(seed, Purpose.SAMPLE, 4, r))
            for r in rows
        ]
        z = torch.stack(z).to(device)
        style = (1 - scale) * style + scale * model.nets.mapping_network(z, y)
    out = model.nets.generator(x, style).clamp(-1, 1)
    return ((out[:, 0].float() + 1) / 2).cpu().numpy()
