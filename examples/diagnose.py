#!/usr/bin/env python
"""The diagnostic scene benchmark: does each DAG-Net module do its job on scenes built for it?

The same program as the installed ``dagnet-diagnose`` command
(:mod:`dagnet_layers.commands.diagnose`); ``--help`` lists every option. Examples::

    python examples/diagnose.py                       # 3 seeds x 8 presets, about 30 min on 2 cores
    python examples/diagnose.py --presets baseline bam full --seeds 0 1 2 3 4
    python examples/diagnose.py --presets full --output-dir runs/gcn_max -- --gcn-readout max

Everything it writes says SYNTHETIC: the scenes are not EMOTIC.
"""

import sys

from dagnet_layers.commands.args import diagnose_entry

if __name__ == "__main__":
    sys.exit(diagnose_entry(prog="diagnose.py"))
