"""Training: the stages of :meth:`acn.pipeline.ACN.fit` and what they share.

- :mod:`acn.train.base`: the weakly-supervised base model of each stream (train, predict,
  checkpoint);
- :mod:`acn.train.outputs`: its per-video outputs (SCP, attention, video scores), the
  attention threshold and classification mAP measured on them, their files in a run folder;
- :mod:`acn.train.regression`: the regression networks, trained with the coherence loss;
- :mod:`acn.train.distributed`: torchrun support (sharded batches, summed gradients).

Import the submodules directly (no heavy imports here).
"""
