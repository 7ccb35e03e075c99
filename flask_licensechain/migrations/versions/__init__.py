"""The revisions, one file each (``rNNNN_<what>.py``); see the package docstring."""
