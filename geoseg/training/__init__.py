"""Training the segmentation generator, optionally against a conditional PatchGAN critic.

``config`` (what to train on and how) → ``labels`` (vector or raster labels for a window) →
``chips`` (which windows, split, augmentation) → ``losses`` / ``metrics`` → ``trainer`` (the
pix2pix loop: update D, then G) → ``evaluate`` (a checkpoint against labelled scenes).
"""
