"""Segmentation models: the U-Net generator, its discriminator, and self-describing checkpoints."""
