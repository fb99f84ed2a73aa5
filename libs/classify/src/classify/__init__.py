"""A small document classifier: featurize's vectors into a scikit-learn model."""

from __future__ import annotations

import featurize
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def train(texts: list[str], labels: list[str]):
    model = make_pipeline(StandardScaler(), LogisticRegression())
    return model.fit(featurize.matrix(texts), labels)


def predict(model, texts: list[str]) -> list[str]:
    return list(model.predict(featurize.matrix(texts)))
