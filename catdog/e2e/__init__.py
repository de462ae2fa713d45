"""End-to-end training: the frozen conv base and head on augmented images, on Ray Train."""
