"""Models: the base soft-selection classifier, the anchor regression networks and the
differentiable coherence loss (:mod:`acn.model.coherence`: the equations; beneath it
:mod:`acn.model.prefix_integral` and the speed paths of :mod:`acn.model.coherence_fast`).
Import the submodules directly (no heavy imports here)."""
