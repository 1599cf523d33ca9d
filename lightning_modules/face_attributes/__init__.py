"""Face attribute classification (CelebA -> FFHQ): the module, its panel and its label writer.

- ``module``: ``FaceAttributeClassifier``;
- ``attribute_panel``: ``LogAttributePanel``, images captioned with true and predicted attributes;
- ``label_writer``: ``WriteAttributeLabels``, soft and hard labels of an unlabelled set (FFHQ).
"""

from lightning_modules.face_attributes.module import FaceAttributeClassifier

__all__ = ["FaceAttributeClassifier"]
