"""validation: simulate many samples in both engines, compare them, probe the learned solution."""
