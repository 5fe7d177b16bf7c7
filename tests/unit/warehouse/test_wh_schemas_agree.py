"""The pandera contracts (`ib_pipeline.schemas`) and the Arrow schemas the store writes
(`storage.datasets`, from `ibkr.tables`) declare the same columns: names and order,
nullability, and dtype family (timestamps: unit and zone too). They cannot drift apart."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from ib_pipeline.schemas import MODELS
from ib_pipeline.storage.datasets import AS_OF, DATASETS, SESSION_DATE, DatasetSpec

DERIVED = {"bars": [SESSION_DATE.name]}
"""Stored columns the store derives after validation (not in the contract)."""


def arrow_family(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_timestamp(kind):
        assert isinstance(kind, pa.TimestampType)
        return f"timestamp[{kind.unit}, {kind.tz}]"
    if pa.types.is_date(kind):
        return "date"
    raise AssertionError(f"no family for {kind}")


def pandera_family(dtype: object) -> str:
    numpy_like = getattr(dtype, "type", dtype)
    if isinstance(numpy_like, pd.DatetimeTZDtype):
        return f"timestamp[{numpy_like.unit}, {numpy_like.tz}]"
    if isinstance(numpy_like, pd.StringDtype):
        return "string"
    text = str(dtype).lower()
    for prefix, family in (("int", "int"), ("float", "float"), ("bool", "bool")):
        if text.startswith(prefix):
            return family
    raise AssertionError(f"no family for {dtype}")


def validated_schema(spec: DatasetSpec) -> pa.Schema:
    """What the contract sees: the normaliser's columns, plus ``as_of`` when the store adds it."""
    return spec.input_schema.insert(0, AS_OF) if spec.adds_as_of else spec.input_schema


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_pandera_model_and_arrow_schema_declare_the_same_columns(dataset: str) -> None:
    spec = DATASETS[dataset]
    model = MODELS[dataset].to_schema()
    arrow = validated_schema(spec)
    assert list(model.columns) == arrow.names
    for field in arrow:
        column = model.columns[field.name]
        assert column.nullable == field.nullable, (dataset, field.name)
        assert pandera_family(column.dtype) == arrow_family(field.type), (dataset, field.name)
    stored = spec.schema
    assert stored.names == [*arrow.names, *DERIVED.get(dataset, [])]
    for field in arrow:
        assert stored.field(field.name).equals(field), (dataset, field.name)


def test_every_dataset_has_a_model() -> None:
    assert set(MODELS) == set(DATASETS)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_no_validated_row_can_be_all_missing(dataset: str) -> None:
    """Frame-wide checks run with ``ignore_na=False`` (`schemas.SKIP_ALL_MISSING_ROWS`):
    skipping rows whose every value is missing would change nothing only because such rows
    cannot exist. The contract fills the required columns before pandera sees a frame, so each
    dataset needs one: its key columns are."""
    spec = DATASETS[dataset]
    required = {f.name for f in validated_schema(spec) if not f.nullable}
    assert set(spec.key) <= required, (dataset, spec.key, required)
    checks = MODELS[dataset].to_schema().checks
    assert all(check.ignore_na is False for check in checks), dataset
