"""Weakly supervised object localization (WSOL) metrics, as clovaai/wsolevaluation defines them.

- ``metrics``: ``MaxBoxAccuracy``, ``MaxBoxAccuracyV2``, ``PixelAveragePrecision``,
  ``LocalizationAccuracy`` (GT-known / Top-k Loc), torchmetrics ``Metric`` classes with summable
  states (exact under DDP), and ``WSOLMetrics``, the four of one stage sharing one box pass;
- ``functional``: the math, one ``_update`` / ``_compute`` pair per metric (threshold grid, CAM
  resize and normalization, hits, PxAP histograms, Top-k counts);
- ``boxes``: contour boxes of thresholded maps, the plain cv2 path and the fast batched one;
- ``level_sets``: the fast path's analysis of all thresholds of a map at once (numba);
- ``callback``: ``LogWSOLMetrics``, the evaluation callback that logs them all from the ``CAMS``
  + ``BOXES`` / ``MASKS`` (+ ``LOGITS``, ``LABEL``) step outputs.
"""
