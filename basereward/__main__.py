"""`python -m basereward VERB ...`: the same verbs as the `basereward` command; this is the form torchrun starts:

torchrun --nproc_per_node 8 -m basereward train --config configs/basereward-qwen2.5-vl-7b.yaml
"""

import sys

from basereward.cli import main

sys.exit(main())
