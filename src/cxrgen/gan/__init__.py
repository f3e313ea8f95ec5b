"""GANs on chest X-rays: Med-StyleGAN2 (a StarGAN v2 multi-domain translator) and a
class-conditional DCGAN baseline, with the generation of synthetic sets for evaluation.

Modules: ``config`` (the GAN training configs), ``loop`` (the step / EMA / checkpoint scaffolding
both trainers share), ``stargan_nets`` / ``stargan_losses`` / ``stargan_train``, ``dcgan``
(networks) / ``dcgan_train``, ``artifacts`` (saving, loading, labelled grids, loss plots) and
``generate`` (synthetic sets for FID / LPIPS).
"""
