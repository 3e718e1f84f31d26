# Train every run of a thesis table: seeds 0-4 of each of its experiments (conf/sweep/table_*.yaml).
#   make reproduce-table-2.5                          here, one run after the other
#   make reproduce-table-2.5 LAUNCHER=local JOBS=3    here, 3 runs at once (submitit_local)
#   make reproduce-table-2.5 LAUNCHER=slurm SLURM_PARTITION=gpu SLURM_TIME=720
#   make reproduce-table-2.5 SEEDS=0,1 ARGS="trainer=gpu"
# Runs with a completed record are skipped, so relaunching a sweep runs only what is missing, and a
# run that was killed resumes from its last.ckpt. See docs/slurm.md.
PY ?= uv run python
RESULTS_DIR ?= results/runs
# LAUNCHER: basic (Hydra's own, sequential) | local (JOBS runs at once) | slurm (conf/hydra/launcher/)
LAUNCHER ?= basic
JOBS ?= 2
# SEEDS=0,1 replaces the sweep's seed list; EXPERIMENTS=a,b its experiment list; ARGS: more overrides
SEEDS ?=
EXPERIMENTS ?=
ARGS ?=
# SLURM resources (empty = conf/hydra/launcher/slurm.yaml; docs/slurm.md): SLURM_TIME in minutes per
# job, SLURM_MEM in GB per node; SLURM_QOS, SLURM_CONSTRAINT (node features, e.g. a100|h100),
# SLURM_EXCLUDE (nodes, e.g. gpu[01-02]), SLURM_GRES (e.g. gpu:a100:1, replaces SLURM_GPUS),
# SLURM_MEM_PER_CPU (e.g. 4G, replaces SLURM_MEM); the value null clears a setting
SLURM_PARTITION ?=
SLURM_ACCOUNT ?=
SLURM_TIME ?=
SLURM_GPUS ?=
SLURM_CPUS ?=
SLURM_MEM ?=
SLURM_QOS ?=
SLURM_CONSTRAINT ?=
SLURM_EXCLUDE ?=
SLURM_GRES ?=
SLURM_MEM_PER_CPU ?=
REPRODUCE_IDS := 2.3 2.4 2.5 2.6 3.2 4.1 4.2 4.3 4.4 4.5 n3.1 n3.2 n3.3 n3.4 n3.5 n3.6 pp2 pp3 pp4 pp5
REPRODUCE_TARGETS := $(addprefix reproduce-table-,$(REPRODUCE_IDS))

_strip = $(strip $(1))
# an override value as a Hydra string, quoted for the shell and for Hydra (| & [ ] :), null stays null
_hq = $(if $(filter null,$(1)),null,"$(1)")
# hydra.launcher.<key>=<value of the make variable> when it is set: $(call _slurm_opt,key,VARIABLE)
_slurm_opt = $(if $(call _strip,$($(2))),'hydra.launcher.$(1)=$(call _hq,$(call _strip,$($(2))))')
_LAUNCHER_ARGS = \
  $(if $(filter local,$(call _strip,$(LAUNCHER))),hydra/launcher=local hydra.sweeper.max_batch_size=$(call _strip,$(JOBS))) \
  $(if $(filter slurm,$(call _strip,$(LAUNCHER))),hydra/launcher=slurm \
    $(if $(call _strip,$(SLURM_PARTITION)),hydra.launcher.partition=$(call _strip,$(SLURM_PARTITION))) \
    $(if $(call _strip,$(SLURM_ACCOUNT)),hydra.launcher.account=$(call _strip,$(SLURM_ACCOUNT))) \
    $(if $(call _strip,$(SLURM_TIME)),hydra.launcher.timeout_min=$(call _strip,$(SLURM_TIME))) \
    $(if $(call _strip,$(SLURM_GPUS)),hydra.launcher.gpus_per_node=$(call _strip,$(SLURM_GPUS))) \
    $(if $(call _strip,$(SLURM_CPUS)),hydra.launcher.cpus_per_task=$(call _strip,$(SLURM_CPUS))) \
    $(if $(call _strip,$(SLURM_MEM)),hydra.launcher.mem_gb=$(call _strip,$(SLURM_MEM))) \
    $(call _slurm_opt,qos,SLURM_QOS) $(call _slurm_opt,constraint,SLURM_CONSTRAINT) \
    $(call _slurm_opt,exclude,SLURM_EXCLUDE) $(call _slurm_opt,gres,SLURM_GRES) \
    $(call _slurm_opt,mem_per_cpu,SLURM_MEM_PER_CPU) \
    $(if $(call _strip,$(SLURM_GRES)),$(if $(call _strip,$(SLURM_GPUS)),,hydra.launcher.gpus_per_node=null)) \
    $(if $(call _strip,$(SLURM_MEM_PER_CPU)),$(if $(call _strip,$(SLURM_MEM)),,hydra.launcher.mem_gb=null)))
_SWEEP_ARGS = \
  $(if $(call _strip,$(SEEDS)),seed=$(call _strip,$(SEEDS))) \
  $(if $(call _strip,$(EXPERIMENTS)),+experiment=$(call _strip,$(EXPERIMENTS)))

.PHONY: reproduce-all $(REPRODUCE_TARGETS)

# reproduce-table-2.3 ... reproduce-table-pp5; REPRODUCE_AFTER_<id> (set in mk/<topic>.mk) runs after the training
$(REPRODUCE_TARGETS): reproduce-table-%:
	@case "$(call _strip,$(LAUNCHER))" in basic|local|slurm) ;; \
	  *) echo "LAUNCHER=$(LAUNCHER): valid: basic, local, slurm" >&2; exit 2;; esac
	$(PY) train.py -m +sweep=table_$(subst .,_,$*) results_dir=$(RESULTS_DIR) \
	  $(strip $(_LAUNCHER_ARGS) $(_SWEEP_ARGS)) $(ARGS)
	$(REPRODUCE_AFTER_$*)

reproduce-all: $(REPRODUCE_TARGETS) ## train every thesis table's runs (one table: reproduce-table-2.5 etc.; docs/slurm.md)
