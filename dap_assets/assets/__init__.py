"""One module per area of the asset graph (docs/architecture.md); every module here is loaded."""
