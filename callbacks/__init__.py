from callbacks.auroc import LogAUROC, per_attribute_auroc  # noqa: F401
from callbacks.label_writer import WriteAttributeLabels  # noqa: F401
from callbacks.panels import LogAttributePanel, attribute_bar_chart, captioned_grid  # noqa: F401
