"""Images and image encoders, shared by every model family."""
