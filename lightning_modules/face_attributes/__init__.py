"""Face attribute classification (CelebA -> FFHQ): the module, its panel and its label writer.

- ``module``: ``FaceAttributeClassifier``;
- ``attribute_panel``: ``LogAttributePanel``, images captioned with true and predicted attributes;
- ``label_writer``: ``WriteAttributeLabels``, soft and hard labels of an unlabelled set (FFHQ);
- ``losses``: the class-weighted BCE (eqs. 1-6); ``thresholds``: the per-attribute threshold
  search.
"""

from lightning_modules.face_attributes.module import FaceAttributeClassifier

__all__ = ["FaceAttributeClassifier"]
