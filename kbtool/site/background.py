"""Run one rendering job in a forked process while the renderer goes on with other pages.

A site of 10,000 papers spends most of a rebuild in single-threaded Python; the downloads
(BibTeX, CSL-JSON and JSON of every paper) need nothing the other pages make, so on a machine
with two cores they are written by a child process meanwhile. Where there is no ``fork``, or
the child fails, the job simply runs in this process: the files are the same either way.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

#: Fewer papers than this: forking costs more than the job.
MIN_PAPERS = 2000


class BackgroundJob:
    """``job`` started in a forked child (when ``worth_it`` and possible), else run at once;
    ``wait`` returns when its work is done, doing it here if the child did not."""

    def __init__(self, job: Callable[[], None], worth_it: bool) -> None:
        self.job = job
        self.process: multiprocessing.process.BaseProcess | None = None
        can_fork = "fork" in multiprocessing.get_all_start_methods()
        if worth_it and can_fork and (os.cpu_count() or 1) > 1:
            self.process = multiprocessing.get_context("fork").Process(target=job, daemon=True)
            try:
                self.process.start()
            except OSError:
                self.process = None
        if self.process is None:
            job()

    def wait(self) -> None:
        """Block until the job's work is done (redoing it here if the child failed)."""
        if self.process is None:
            return
        self.process.join()
        if self.process.exitcode != 0:
            self.job()
        self.process = None

    def abandon(self) -> None:
        """Stop the child, if any, without redoing its work (the caller is failing anyway)."""
        if self.process is not None:
            self.process.terminate()
            self.process.join()
            self.process = None
