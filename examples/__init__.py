"""The fictional Clipstream estate of the demo, beside its catalogue and order."""
