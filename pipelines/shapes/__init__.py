"""The shapes world: scenes of one coloured shape, their sample media and their vocabulary."""
