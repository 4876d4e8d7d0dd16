"""Dagster definitions for the DAP engine: thin assets that call `dap_model`."""
