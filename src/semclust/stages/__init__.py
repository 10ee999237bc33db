"""One LightningModule (or function) per stage, and the runners that wire them to a run."""
