"""Evaluation metrics of generated images: FID (Inception and chest-X-ray classifier feature
spaces) and LPIPS diversity, with offline weight lookup (``weights``) and the paper's table."""
