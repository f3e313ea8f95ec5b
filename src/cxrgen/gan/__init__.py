"""GANs on chest X-rays: Med-StyleGAN2 (a StarGAN v2 multi-domain translator) and a
class-conditional DCGAN baseline, with the generation of synthetic sets for evaluation.

Modules: ``config`` (the GAN training configs), ``stargan_nets`` (networks, the trained
translator and its loader) / ``stargan_losses`` / ``stargan_train`` (its step for the one
training loop, :mod:`cxrgen.training.loop`), ``dcgan`` (networks and loader) / ``dcgan_train``,
and ``generate_synthetic`` (synthetic sets for FID / LPIPS); a saved GAN's files are
:mod:`cxrgen.model_files`.
"""
