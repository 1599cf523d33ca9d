"""MinMaxCAM (Wang, Oramas, Tuytelaars, BMVC 2021; thesis ch. 5) and its studies.

``module.py``: the LightningModule ``MinMaxCAM`` (and its CAM baseline); ``losses.py``: the
Stage II regularizers CRR and FRR; ``backbones.py``: the CAM backbones with the WSOL stride
changes; ``region_features.py``: ``LogRegionFeatures``, the Sec. 5.4 feature analysis (Fig. 5.6).
"""

from lightning_modules.minmaxcam.module import MinMaxCAM
from lightning_modules.minmaxcam.region_features import LogRegionFeatures

__all__ = ["LogRegionFeatures", "MinMaxCAM"]
