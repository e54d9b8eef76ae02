"""What a device's model sees and says: input features, edge and cloud predictions, true labels.

:func:`draw_model_outputs` draws, for all of a device's inferences at once,
the ``ml.feature.*`` values of its model (numeric: normal; categorical: by
the feature's probabilities), the true class (classifiers) or value
(regression), the edge prediction and the cloud shadow's prediction of
the same input, with scores::

    out = draw_model_outputs(rng, device, effects, t, version)
    out.feats          # [(attribute name, Python values, raw numpy values)] per feature
    out.pred_edge[i], out.score_edge[i], out.pred_cloud[i], out.labels_true[i]

An input-drift incident on the device changes the features and the true
classes from its start; a shadow-disagreement incident lowers the edge
accuracy of one model version. A wrong label is uniform over the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .fleet import Device, Model

if TYPE_CHECKING:  # pragma: no cover
    from .incidents import Effects, InputDrift


@dataclass
class ModelOutputs:
    feats: list[tuple[str, list, np.ndarray]]  # (ml.feature.<name>, values, raw values or category indices)
    pred_edge: list  # label (classification) or value (regression)
    pred_cloud: list
    labels_true: list
    score_edge: list | None = None  # classification only
    score_cloud: list | None = None


def draw_model_outputs(rng: np.random.Generator, device: Device, effects: Effects, t: np.ndarray,
                       version: np.ndarray) -> ModelOutputs:
    """Features and predictions of the inferences at true times ``t`` run by model ``version``."""
    model = device.model
    n = len(t)
    drift = [d for d in effects.drift if d.hits(device)]
    dmask = (t >= drift[0].start_ns) if drift else np.zeros(n, dtype=bool)
    feats = _features(rng, model, drift, dmask, n)
    if model.task == "classification":
        return _classify(rng, device, effects, model, drift, dmask, version, feats)
    return _regress(rng, model, feats, n)


def _features(rng: np.random.Generator, model: Model, drift: list[InputDrift], dmask: np.ndarray,
              n: int) -> list[tuple[str, list, np.ndarray]]:
    feats = []
    for f in model.features:
        if f.categorical:
            idx = rng.choice(len(f.categories), p=f.probabilities, size=n)
            if drift and f.name in drift[0].category_probs:
                alt = rng.choice(len(f.categories), p=drift[0].category_probs[f.name], size=n)
                idx = np.where(dmask, alt, idx)
            cats = f.categories
            feats.append((f"ml.feature.{f.name}", [cats[i] for i in idx.tolist()], idx))
        else:
            x = rng.normal(f.mean, f.std, n)
            if drift and f.name in drift[0].feature_shift:
                x = np.where(dmask, x + drift[0].feature_shift[f.name], x)
            feats.append((f"ml.feature.{f.name}", np.round(x, f.decimals).tolist(), x))
    return feats


def _classify(rng: np.random.Generator, device: Device, effects: Effects, model: Model,
              drift: list[InputDrift], dmask: np.ndarray, version: np.ndarray,
              feats: list[tuple[str, list, np.ndarray]]) -> ModelOutputs:
    n = len(version)
    k_lab = len(model.labels)
    y = rng.choice(k_lab, p=model.label_prior, size=n)
    if drift:
        y_alt = rng.choice(k_lab, p=drift[0].label_prior, size=n)
        y = np.where(dmask, y_alt, y)
    acc = effects.edge_accuracy(device, model.name, version, model.edge_accuracy)
    e_ok = rng.random(n) < acc
    edge = np.where(e_ok, y, (y + 1 + rng.integers(0, k_lab - 1, n)) % k_lab)
    c_ok = rng.random(n) < model.cloud_accuracy
    cloud = np.where(c_ok, y, (y + 1 + rng.integers(0, k_lab - 1, n)) % k_lab)
    s_edge = np.where(e_ok, rng.beta(9.0, 1.3, n), rng.beta(3.0, 2.5, n))
    s_cloud = np.where(c_ok, rng.beta(12.0, 1.2, n), rng.beta(3.0, 2.0, n))
    labs = model.labels
    return ModelOutputs(
        feats=feats,
        pred_edge=[labs[i] for i in edge.tolist()],
        pred_cloud=[labs[i] for i in cloud.tolist()],
        labels_true=[labs[i] for i in y.tolist()],
        score_edge=np.round(s_edge, 4).tolist(),
        score_cloud=np.round(s_cloud, 4).tolist(),
    )


def _regress(rng: np.random.Generator, model: Model, feats: list[tuple[str, list, np.ndarray]],
             n: int) -> ModelOutputs:
    # the energy forecaster's true value, from its features (day_type 1: weekend)
    fx = {name.removeprefix("ml.feature."): raw for name, _, raw in feats}
    weekend = fx["day_type"] == 1
    v = (0.55 * fx["load_kw"] + 0.3 * (fx["ambient_temp_c"] - 21.0) + 4.0 * fx["humidity"]
         - 3.0 * weekend + rng.normal(0.0, 0.8, n))
    return ModelOutputs(
        feats=feats,
        pred_edge=np.round(v + rng.normal(0.0, model.edge_value_noise, n), 3).tolist(),
        pred_cloud=np.round(v + rng.normal(0.0, model.cloud_value_noise, n), 3).tolist(),
        labels_true=np.round(v, 3).tolist(),
    )
