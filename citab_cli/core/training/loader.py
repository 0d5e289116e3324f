"""Background batch preparation: the next batches are read from the memory maps and collated
while the current one trains."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from citab_cli.core.layers.tabular_batch import TabularBatch
from citab_cli.core.runtime.dataset import Collator

_DONE = object()


class Prefetcher:
    """Yields (items, images (P, 1, D, H, W) float32, table) for each item array of `batches`,
    `depth` batches ahead, in order: the images of the first `pairs` items (all when None; the
    others have no scan), the table of every item. Images are in pinned memory when `pin` is
    set."""

    def __init__(
        self,
        batches: Iterable[np.ndarray],
        collator: Collator,
        depth: int = 2,
        pin: bool = False,
        pairs: int | None = None,
    ):
        self._batches = batches
        self._collator = collator
        self._pairs = pairs
        self._pin = pin
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            for items in self._batches:
                images = torch.from_numpy(self._collator.images(items[: self._pairs]))
                table = self._collator.table(items)
                if self._pin:  # page-locked: the copies to the GPU need not wait
                    images, table = images.pin_memory(), table.pin_memory()
                if not self._put((items, images, table)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[tuple[np.ndarray, torch.Tensor, TabularBatch]]:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._thread.join(timeout=5)
