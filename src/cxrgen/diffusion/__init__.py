"""Class-conditional DDPM (diffusers UNet2DModel with a null class for classifier-free guidance)."""
