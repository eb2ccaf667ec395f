"""Training the segmentation generator, optionally against a conditional PatchGAN critic.

``config`` (what to train on and how) → ``labels`` (vector or raster labels for a window) →
``chips`` (which windows, split, planned draws and augmentation) → ``loader`` (draws read by
DataLoader workers into batches) → ``losses`` / ``metrics`` → ``trainer`` (the pix2pix loop:
update D, then G) → ``evaluate`` (a checkpoint against labelled scenes). What a checkpoint
records about its data: ``domain`` (GSD range, band statistics) and ``provenance`` (portable
paths, git); ``restamp`` adds both to a checkpoint trained before they existed.
"""
