"""Detector backends, one self-contained file each: :mod:`.yolo` (ultralytics), :mod:`.detr` (rfdetr).

Nothing is imported here: ``synspill.predictors.load_predictor`` imports the backend it needs.
"""
