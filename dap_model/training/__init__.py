"""Training: the trainer (`trainer.train`), streaming data and augmentations (`data`), atomic
checkpoints with exact resume (`checkpoint`), lr schedules (`schedule`), MLflow helpers
(`tracking`), pseudo-labelling (`pseudo`) and discriminator-based curation (`curation`).

No Dagster here: the assets in `dap_assets/assets/{training,curation}.py` call these."""
