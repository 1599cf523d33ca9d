"""The output-key contract between LightningModules and evaluation callbacks.

A module's ``validation_step`` / ``test_step`` (and ``predict_step``) returns a dict whose keys are
these constants; a callback names the keys it consumes. Each key has one meaning, whatever method
returns it, so any callback works with any method that returns what it needs. A module lists the
keys it returns in ``evaluation_outputs`` (a class attribute), and an evaluation callback checks
at setup that the keys it needs are among them (``callbacks.base.EvaluationCallback``).

Batch keys (what a DataModule yields) are written where they are read; the ones that are also
output keys (``LABEL``, ``BOXES``, ``MASKS``, ``IMAGE_ID``) carry the same meaning in both.
"""

from __future__ import annotations

#: (B, K) float: unnormalized scores, one column per class or attribute (before sigmoid/softmax).
LOGITS = "logits"
#: (B, K) float in [0, 1]: probabilities, one column per class, attribute or bag.
PROBS = "probs"
#: (B, K) in {0, 1}: binary ground truth, column-aligned with ``LOGITS`` or ``PROBS`` (multi-hot).
TARGET = "target"
#: (B,) int64: ground-truth class index.
LABEL = "label"
#: (B,) float: predicted count (regression heads, e.g. MIL counting).
COUNT = "count"
#: (B,) float: ground-truth count.
TARGET_COUNT = "target_count"
#: (B, h, w) float: raw class activation maps of the ground-truth class, at any resolution.
CAMS = "cams"
#: (B, G, 4) int or a list of (n_i, 4): inclusive (x0, y0, x1, y1) ground-truth boxes in pixels.
BOXES = "boxes"
#: (B, H, W): ground-truth masks, 1 object, 0 background, any other value ignored.
MASKS = "masks"
#: (B, C, H, W) float in [0, 1]: the images a model maps to ``PREDS`` (the source to edit, the
#: low-resolution face, the person to dress), at any size.
INPUTS = "inputs"
#: (B, C, H, W) float in [0, 1]: predicted (reconstructed, edited, super-resolved) images.
PREDS = "preds"
#: (B, C, H, W) float in [0, 1]: ground-truth images, compared with ``PREDS`` pixel by pixel.
TARGET_IMAGES = "target_images"
#: (B, C, H, W) float in [0, 1]: generated images, compared with ``REAL`` as distributions (FID).
FAKE = "fake"
#: (B, C, H, W) float in [0, 1]: real images of the distribution ``FAKE`` should match.
REAL = "real"
#: list[str] of length B: the dataset's identifier of each image (file name).
IMAGE_ID = "image_id"

ALL: frozenset[str] = frozenset(
    {
        LOGITS,
        PROBS,
        TARGET,
        LABEL,
        COUNT,
        TARGET_COUNT,
        CAMS,
        BOXES,
        MASKS,
        INPUTS,
        PREDS,
        TARGET_IMAGES,
        FAKE,
        REAL,
        IMAGE_ID,
    }
)
