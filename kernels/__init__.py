"""Compute kernels of the denoising step, each beside its plain-PyTorch reference.

`ops` holds the references: the ground truth for fused kernels and what runs on CPU.
"""

from .ops import attention, moe, rms_norm

__all__ = ["attention", "moe", "rms_norm"]
