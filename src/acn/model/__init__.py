"""Models: the base soft-selection classifier, the anchor regression networks and the
differentiable coherence loss. Import the submodules directly (no heavy imports here)."""
