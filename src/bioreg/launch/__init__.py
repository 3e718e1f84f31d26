"""Launching runs on a SLURM cluster: the layer between Hydra's launcher and one run.

* :mod:`bioreg.launch.slurm_cmd` — calling SLURM's commands and reading their ``key=value`` output;
* :mod:`bioreg.launch.request` — before submitting: can the partition ever run the request
  (GPUs, CPUs, memory, time limit, features, excluded nodes)? One line naming the fix if not;
* :mod:`bioreg.launch.jobstate` — following the jobs with ``scontrol show job`` (and ``sacct`` for
  jobs slurmctld has forgotten), so that a job that died is noticed without accounting;
* :mod:`bioreg.launch.sweep` — the launcher's side: submit one job array, wait, one line per failed run;
* :mod:`bioreg.launch.jobside` — the job's side: name the job after its run, keep tracebacks in the
  log, leave a requeued job to SLURM;
* :mod:`bioreg.launch.stints` — a run's record across requeues: ``requeued``/``interrupted``
  instead of ``failed``, and every stint's wall time.

The Hydra launcher plugin that ties them together is ``hydra_plugins.bioreg_launcher`` (Hydra finds
launchers only in the ``hydra_plugins`` namespace); see docs/slurm.md. Nothing here imports the
application modules (run, cli): they call into this package.
"""
