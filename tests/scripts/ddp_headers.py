"""Run with torchrun --nproc_per_node=2 PROJECT OUT: two ranks fetch the header cache while
rank 0 writes it. Rank 1 looks only once rank 0's cache is on disk, so it finds nothing
missing; both must still meet at the barrier (a short gloo timeout turns a miss into a
failure, not a hang)."""

import sys
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from citab_cli.core import headers  # noqa: E402
from citab_cli.core.data.project import Project  # noqa: E402
from tests.helpers import FakeEncoder  # noqa: E402

dist.init_process_group("gloo", timeout=timedelta(seconds=20))
rank = dist.get_rank()
project = Project(Path(sys.argv[1]))
headers.load_encoder = lambda model: FakeEncoder()
cohorts = project.cohorts()
if rank == 1:
    cache_file = project.header_cache(project.load_settings().header_encoder)
    while not cache_file.exists():
        time.sleep(0.05)
    time.sleep(0.5)  # rank 0 has written it and waits at the barrier
cache = headers.ensure_embedded(project, cohorts, embed_here=rank == 0, wait=dist.barrier)
dist.barrier()  # with a missed barrier this one pairs with rank 0's first, then rank 0 hangs
assert not headers.missing_texts(project, cohorts, cache)
(Path(sys.argv[2]) / f"rank{rank}.ok").write_text("ok")
dist.destroy_process_group()
