"""The command-line programs, installed with the package.

- ``dagnet-train`` (:mod:`dagnet_layers.commands.train`): train and evaluate on
  EMOTIC, or on the synthetic demo set when no dataset is given;
- ``dagnet-predict`` (:mod:`dagnet_layers.commands.predict`): predict for the
  persons of photos, folders, globs and videos with a trained checkpoint;
- ``dagnet-demo`` (:mod:`dagnet_layers.commands.demo`): the same on a local web
  page (the ``demo`` extra);
- ``dagnet-diagnose`` (:mod:`dagnet_layers.commands.diagnose`): the diagnostic scene
  benchmark, each module read against scenes whose cues are known;
- ``dagnet-emotic-cache`` (:mod:`dagnet_layers.emotic.data.cache`): decode EMOTIC once
  into a memory-mapped cache, or verify one.

Their arguments live in :mod:`dagnet_layers.commands.args`, which imports only the
standard library, so ``--help`` answers before torch is loaded.
"""

# The programs are imported on use (``--help`` must not load torch): nothing is re-exported.
__all__: list[str] = []
