#!/usr/bin/env python
"""The diagnostic benchmark: does each DAG-Net module do the job the paper gives it?

The same program as the installed ``dagnet-diagnose`` command
(:mod:`dagnet_layers.commands.diagnose`); ``--help`` lists every option. Examples::

    python examples/diagnose.py                       # 3 modules x 6 seeds (docs: its time)
    python examples/diagnose.py --modules lsam --seeds 0 1 2 3 4 5 6 7
    python examples/diagnose.py --arms bam/oracle bam/none --output-dir runs/bam_headroom

Everything it writes says SYNTHETIC: the scenes are not EMOTIC.
"""

import sys

from dagnet_layers.commands.entry import diagnose_entry

if __name__ == "__main__":
    sys.exit(diagnose_entry(prog="diagnose.py"))
