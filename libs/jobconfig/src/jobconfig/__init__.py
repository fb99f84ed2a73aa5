"""A batch job's settings, validated before the job starts."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class JobConfig(BaseModel):
    name: str = Field(min_length=1)
    workers: int = Field(default=1, ge=1, le=64)
    inputs: list[str] = []

    @field_validator("name")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.strip().lower()


def load(data: dict) -> JobConfig:
    return JobConfig.model_validate(data)
