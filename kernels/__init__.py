"""Compute kernels of the denoising step, each beside its plain-PyTorch reference.

`ops` holds the references: the ground truth for the fused kernels and what runs on CPU.
`*_triton` hold the fused Triton kernels. The names exported here dispatch between the two
(`dispatch`: DGLS_KERNELS=torch|triton, else triton where CUDA and triton are present).
"""

from .dispatch import attention, canvas_attention, logit_stats, moe, rms_norm, rms_norm_add

__all__ = ["attention", "canvas_attention", "logit_stats", "moe", "rms_norm", "rms_norm_add"]
