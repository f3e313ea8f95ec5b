"""One radiograph: a patient's anatomy under one pose and exposure, with optional opacities.

The healthy image and the image with opacities share every step except the
opacity blend (noise realisation, devices, markers, text), and every step
after the blend is pointwise, so the two are equal wherever the lesion mask
is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cxrgen.phantoms.anatomy import PatientAnatomy, render_soft_tissue
from cxrgen.phantoms.findings import (
    TEXT_LINES,
    annotation_layer,
    marker_layer,
    render_devices,
)
from cxrgen.phantoms.geometry import Frame, Pose, blur
from cxrgen.phantoms.lesions import LesionSpec, draw_lesions
from cxrgen.phantoms.lung_markings import render_lung_markings
from cxrgen.phantoms.skeleton import render_bones


@dataclass(frozen=True)
class ImageSetup:
    """Per-image acquisition: size, pose, breathing, projection, exposure, overlays, devices."""

    shape: tuple[int, int]
    shift: tuple[float, float]  # chest centre offset, fraction of the shorter side
    zoom: float
    angle: float  # radians
    inspiration: float
    ap_view: bool
    gain: float
    gamma: float
    bone: float
    noise: float
    sharpen: float
    marker: str
    marker_box: bool
    text: str
    text_bottom: bool
    devices: tuple[str, ...]
    seed: int


def sample_setup(
    rng: np.random.Generator, shape: tuple[int, int], ap_view: bool, devices: tuple[str, ...] = ()
) -> ImageSetup:
    """A random acquisition of a first image."""
    u = rng.uniform
    return ImageSetup(
        shape=(int(shape[0]), int(shape[1])),
        shift=(u(-0.03, 0.03), u(-0.02, 0.05)),
        zoom=u(0.86, 0.97),
        angle=math.radians(u(-4.0, 4.0)),
        inspiration=u(0.97, 1.03),
        ap_view=ap_view,
        gain=u(1.5, 2.0),
        gamma=u(0.9, 1.25),
        bone=u(0.1, 0.15),
        noise=u(0.006, 0.016),
        sharpen=u(0.0, 0.6),
        marker="L" if rng.random() < 0.8 else "R",
        marker_box=bool(rng.random() < 0.4),
        text=str(rng.choice(TEXT_LINES)) if rng.random() < 0.6 else "",
        text_bottom=bool(rng.random() < 0.5),
        devices=tuple(devices),
        seed=int(rng.integers(2**31)),
    )


def follow_up_setup(
    rng: np.random.Generator, prev: ImageSetup, shape: tuple[int, int], devices: tuple[str, ...]
) -> ImageSetup:
    """A later image of the same patient: small changes of pose, breathing and exposure."""
    u = rng.uniform
    return replace(
        prev,
        shape=(int(shape[0]), int(shape[1])),
        shift=(prev.shift[0] + u(-0.015, 0.015), prev.shift[1] + u(-0.015, 0.015)),
        zoom=float(np.clip(prev.zoom * u(0.97, 1.03), 0.84, 0.99)),
        angle=prev.angle + math.radians(u(-1.5, 1.5)),
        inspiration=prev.inspiration * u(0.98, 1.02),
        gain=prev.gain * u(0.93, 1.07),
        gamma=prev.gamma * u(0.95, 1.05),
        noise=prev.noise * u(0.85, 1.15),
        devices=tuple(devices),
        seed=int(rng.integers(2**31)),
    )


def frame_for(setup: ImageSetup) -> Frame:
    """Pixel grid of the image with the chest placed by the setup's pose."""
    h, w = setup.shape
    short = min(h, w)
    scale = 0.5 * short * setup.zoom
    pose = Pose(
        cx=w / 2.0 + setup.shift[0] * short,
        cy=h / 2.0 + setup.shift[1] * short + 0.04 * scale,
        scale=scale,
        angle=setup.angle,
    )
    return Frame.build(setup.shape, pose)


@dataclass(frozen=True, eq=False)
class RenderedImage:
    """Presentation-domain float images in [0, 1] (bright = dense) and their label maps."""

    image: np.ndarray  # float32, with opacities
    healthy: np.ndarray  # float32, the same acquisition without opacities
    lesion: np.ndarray  # bool
    lungs: np.ndarray  # uint8: 0 background, 1 patient's right, 2 patient's left


def render_image(
    anat: PatientAnatomy, setup: ImageSetup, lesion: LesionSpec | None = None
) -> RenderedImage:
    """Draw one radiograph of ``anat`` acquired with ``setup``, with ``lesion`` if given."""
    rng = np.random.default_rng(setup.seed)
    frame = frame_for(setup)
    soft = render_soft_tissue(anat, frame, setup.inspiration, setup.ap_view)
    att = soft.attenuation + render_lung_markings(anat, frame, soft.air)
    att += setup.bone * render_bones(anat, frame, setup.ap_view) * (1.0 - 0.5 * soft.abdomen)
    att += render_devices(anat, frame, setup.devices, rng)
    att += 3.0 * marker_layer(setup.shape, setup.marker, setup.marker_box)

    healthy = 1.0 - np.exp(-setup.gain * np.maximum(att, 0.0))
    healthy = 0.02 + 0.96 * healthy**setup.gamma
    if setup.sharpen > 0:
        healthy += setup.sharpen * (healthy - blur(healthy, frame.px(0.05)))
    healthy = np.clip(blur(healthy, 0.5), 0.0, 1.0)

    if lesion is not None:
        alpha, mask = draw_lesions(lesion, frame, soft.lungs, healthy)
    else:
        alpha, mask = np.zeros(setup.shape, dtype=np.float32), np.zeros(setup.shape, dtype=bool)
    image = healthy + (1.0 - healthy) * alpha

    grain = rng.standard_normal(setup.shape).astype(np.float32)
    grain = blur(grain, 0.6)
    grain /= max(float(grain.std()), 1e-6)
    text = annotation_layer(setup.shape, setup.text, setup.text_bottom)

    def finish(img: np.ndarray) -> np.ndarray:
        img = img + setup.noise * (0.4 + img) * grain
        img = np.maximum(img, 0.93 * text)
        return np.clip(img, 0.0, 1.0).astype(np.float32)

    return RenderedImage(
        image=finish(image), healthy=finish(healthy), lesion=mask, lungs=soft.lungs
    )
