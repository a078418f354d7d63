"""Detections <-> COCO results round trip and results validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synspill.detections import Detections, read_results, write_results
from synspill.errors import DatasetError


def test_round_trip(tmp_path):
    d = Detections([[10, 20, 40, 60], [0, 0, 5, 5]], [1, 3], [0.9, np.nan])
    recs = d.to_results(7)
    assert recs[0] == {"image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9}
    assert "score" not in recs[1]
    p = write_results(tmp_path / "p.json", recs)
    assert read_results(p, image_ids={7}, category_ids={1, 3}) == recs


@pytest.mark.parametrize("payload,pattern", [
    ({"annotations": []}, "COCO dataset, not a results file"),
    ([{"image_id": 1, "bbox": [0, 0, 1, 1]}], "record #0 has no 'category_id'"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}], "record #0 has bbox"),
    ([{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1]}], "image_id 5, which is not in the ground truth"),
    ([{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}], "category_id 9"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 3}], "score 3"),
])
def test_bad_results(tmp_path, payload, pattern):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(payload))
    with pytest.raises(DatasetError, match=pattern):
        read_results(p, image_ids={1}, category_ids={1, 2})


def test_py_factory_predictor_spec_and_errors():
    from synspill.errors import UsageError
    from synspill.predictors import PredictorConfig, load_predictor

    pred = load_predictor(PredictorConfig(model="py:tests.watch.blobs:load"))
    assert pred.name and callable(pred.predict)
    with pytest.raises(UsageError, match="write py:MODULE:FACTORY"):
        load_predictor(PredictorConfig(model="py:only_module"))
    with pytest.raises(UsageError, match="check the module is importable"):
        load_predictor(PredictorConfig(model="py:no_such_module_xyz:load"))
