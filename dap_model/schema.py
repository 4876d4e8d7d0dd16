"""Validate a table against its pandera schema: one clear error naming the table and its first problems."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from dap_model.errors import InputError


def validate_table(schema: pa.DataFrameSchema, df: pd.DataFrame, name: str) -> pd.DataFrame:
    """`schema.validate(df)` (all problems collected); InputError naming `name` and five problems."""
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases[["column", "check", "failure_case"]].head(5).to_dict("records")
        raise InputError(f"{name}: {len(err.failure_cases)} problem(s), e.g. {cases}") from None
