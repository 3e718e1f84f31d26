# The SLURM launcher against a real one-node SLURM on this machine (tests/test_slurm_cluster.py).
# Needs root (it apt-get installs slurm-wlm and munge when absent); starts munged, slurmctld and
# slurmd from a temporary folder on 127.0.0.1 and stops exactly those when done. Run it before every
# change to the launcher path (hydra_plugins/bioreg_launcher, src/bioreg/launch, conf/hydra/launcher).
.PHONY: test-slurm

test-slurm: install ## the SLURM launcher against a one-node SLURM stood up here (root; ~8 min; docs/slurm.md)
	BIOREG_SLURM_TESTBED=1 $(UV) run --frozen pytest tests/test_slurm_cluster.py -m slurm \
	  -p no:cacheprovider -s -v
