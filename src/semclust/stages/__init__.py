"""The pipeline's stages: one module (or package) each, holding its LightningModule and the
``run`` that drives it, registered by name (see :mod:`semclust.stages.registry`)."""
