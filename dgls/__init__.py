"""dgls: code infill at the cursor with a text-diffusion mixture-of-experts model."""

__version__ = "0.1.0"
