"""Segmentation models: the U-Net generator, its discriminator, and self-describing checkpoints."""

from pathlib import Path

BUILDINGS_MODEL = Path(__file__).parent.parent / "models" / "buildings-unet.safetensors"
"""The shipped building generator (MODEL_CARD.md): what ``geoseg predict`` uses unless told otherwise."""
