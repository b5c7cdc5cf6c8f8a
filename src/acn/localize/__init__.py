"""Localization: proposals (anchors, regression decoding, filtering, one-per-position), NMS and
RGB/Flow fusion. Pure tensor functions; segments are in snippets unless a docstring says
otherwise."""
