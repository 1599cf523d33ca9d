"""A logger for tests that records the images callbacks send it."""

from lightning.pytorch.loggers import Logger


class RecordingLogger(Logger):
    """A logger with ``log_image`` that only records its calls."""

    def __init__(self, save_dir: str) -> None:
        super().__init__()
        self._save_dir = save_dir
        self.image_calls: list[dict] = []

    name = "recording"
    version = 0

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.image_calls.append({"key": key, "images": images, "step": step, **kwargs})
