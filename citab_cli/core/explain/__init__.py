"""Explanations of a fine-tuned or probed model: column attributions by header text, prototype
routing, scan maps, and the report that shows them."""
