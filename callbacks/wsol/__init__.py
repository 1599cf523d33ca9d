"""Weakly supervised object localization (WSOL) metrics, as clovaai/wsolevaluation defines them.

- ``metrics``: ``MaxBoxAccuracy``, ``MaxBoxAccuracyV2``, ``PixelAveragePrecision``,
  ``LocalizationAccuracy`` (GT-known / Top-k Loc), torchmetrics ``Metric`` classes with summable
  states (exact under DDP);
- ``functional``: the tensor math they share (threshold grid, CAM resize and normalization, hits,
  PxAP histograms);
- ``boxes``: contour boxes of thresholded maps, the plain cv2 path and the fast batched one;
- ``level_sets``: the fast path's analysis of all thresholds of a map at once (numba);
- ``callback``: ``LogWSOLMetrics``, the callback that logs them all from ``cams`` + ``boxes`` /
  ``masks`` step outputs.
"""
