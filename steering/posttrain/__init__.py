"""The project's own post-training of the demo base model: SFT data building."""
