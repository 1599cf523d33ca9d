"""LSTM-based multiple-instance learning (thesis ch. 7) and the poolings of its Table 7.1.

One LightningModule, ``MILModule`` (``module.py``), with the bag pooling injected: ``LSTMPooling``,
``AttentionPooling`` (plain or gated), ``DynamicPooling``. ``studies.py`` holds the method's
studies (instance order, instance clustering, t-SNE), ``infomax.py`` its Deep InfoMax regularizer.
"""

from lightning_modules.mil_lstm.attention import AttentionPooling
from lightning_modules.mil_lstm.dynamic_pooling import DynamicPooling
from lightning_modules.mil_lstm.lstm import LSTMPooling
from lightning_modules.mil_lstm.module import MILModule
from lightning_modules.mil_lstm.pooling import BagPooling

__all__ = ["AttentionPooling", "BagPooling", "DynamicPooling", "LSTMPooling", "MILModule"]
