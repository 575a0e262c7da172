"""The EMOTIC toolkit: everything between the dataset's files and the paper's numbers.

It imports the model zoo (:mod:`dagnet_layers.layers`, :mod:`dagnet_layers.models`)
and is never imported by it. Its rooms, in the order data flows through them:

- :mod:`dagnet_layers.emotic.data`: the official ``Annotations.mat`` and the
  community CSV/npy readers, image decoding and cropping, the decode-once cache,
  the dataset, the paired transforms and the synthetic EMOTIC writer;
- :mod:`dagnet_layers.emotic.losses`: the baselines' losses, each with its score
  function;
- :mod:`dagnet_layers.emotic.metrics`: EMOTIC's AP exactly as the official
  ``eval.m`` computes it;
- :mod:`dagnet_layers.emotic.engine`: training, evaluation and crash-safe
  checkpoints for any model of the zoo;
- :mod:`dagnet_layers.emotic.diagnostic`: the diagnostic benchmark: one SYNTHETIC
  set per module, the arms that span its effect (floor, paper, oracle, controls,
  options beyond the paper), the metrics that read a module against known ground
  truth, and the statistics of the verdicts;
- :mod:`dagnet_layers.emotic.paper`: the published numbers the figures compare with.

Importing this package imports none of them; it needs the ``emotic`` extra
(scipy, scikit-learn) once its modules are used.
"""

#: Nothing is re-exported here: import a room by its name (``dagnet_layers.emotic.data``...).
__all__: list[str] = []
