"""The file the WebUI discovers; the extension lives in the sd_webui_ext package beside it."""
from sd_webui_ext.script import SkipTuningScript  # noqa: F401  (the WebUI collects Script subclasses)
