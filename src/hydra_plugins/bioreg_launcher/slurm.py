"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher with bioreg's checks.

A thin subclass; the logic lives in :mod:`bioreg.launch` (docs/slurm.md):

* ``launch`` (on the login node): check the request against the partition, submit one job array,
  follow the jobs without relying on ``sacct``, one line per failed run
  (:func:`bioreg.launch.sweep.launch_sweep`); a mistake the user can fix ends as one ``error: …``
  line, exit status 2;
* ``__call__`` (inside each job): name the job after its run, keep tracebacks in the job's log
  (:func:`bioreg.launch.jobside.guarded`);
* ``checkpoint`` (inside a job, on submitit's requeue signal): note that the job is requeued, so the
  run's record says ``requeued`` (:mod:`bioreg.launch.stints`), then resubmit as the parent does.

Its config, ``bioreg_slurm`` in the ``hydra/launcher`` group, adds two keys to the parent's:
``check_request`` (ask the cluster before submitting, default true) and ``poll_s`` (at most this
many seconds between two looks at the jobs' states, default 30).

Two consequences of how Hydra's plugin scan loads this module (it executes the module before
registering it in ``sys.modules``, and executes it *again* if it was imported already, e.g. by
unpickling a job): no ``from __future__ import annotations`` (``dataclass`` would look the
annotations up in ``sys.modules``), and no ``super()`` in the methods — the instance a requeued job
unpickles may belong to an earlier execution of this class than the module's current
``BioregSlurmLauncher`` (``super(BioregSlurmLauncher, self)`` then raises ``TypeError``, as
``make test-slurm`` showed), so the parent's methods are called by name.
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

#: keys of this launcher's config that are not submitit's
OWN_KEYS = ("check_request", "poll_s")


@dataclass
class BioregSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.bioreg_launcher.slurm.BioregSlurmLauncher"
    check_request: bool = True
    poll_s: float = 30.0


ConfigStore.instance().store(
    group="hydra/launcher", name="bioreg_slurm", node=BioregSlurmQueueConf, provider="bioreg"
)


class BioregSlurmLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        own = {k: params.pop(k) for k in OWN_KEYS if k in params}
        SlurmLauncher.__init__(self, **params)
        self.own = own

    def launch(self, job_overrides, initial_job_idx):  # type: ignore[no-untyped-def]
        from bioreg.app.cli import explain
        from bioreg.errors import UserError
        from bioreg.launch.sweep import launch_sweep

        try:
            return launch_sweep(self, job_overrides, initial_job_idx)
        except UserError as e:
            explain(e)

    def __call__(self, *args: Any) -> Any:
        from bioreg.launch.jobside import guarded

        return guarded(lambda: SlurmLauncher.__call__(self, *args), args[0])

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from bioreg.launch.stints import note_requeue

        note_requeue()
        return SlurmLauncher.checkpoint(self, *args, **kwargs)
