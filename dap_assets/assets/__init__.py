"""One module per area of the asset graph (DESIGN §1); every module here is loaded."""
