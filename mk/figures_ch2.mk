# Figures of Dutta (2019), chapter 2. Included by the main Makefile.
PY ?= uv run python
FIG_DIR ?= results/figures

.PHONY: figures-ch2 fig-2.3 fig-2.1 fig-2.2

figures-ch2: fig-2.1 fig-2.2 fig-2.3 ## Figures 2.1-2.3 of Dutta (2019) as PNG + PDF under results/figures

# Fig 2.3: correlation of eq 2.14 vs distance and tuning similarity (a=0.225, b=0.0043, c=0.09, tau=1.87)
fig-2.3: ## correlation vs distance and tuning similarity (eq 2.14)
	$(PY) scripts/fig_2_3.py --out-dir $(FIG_DIR)

# Fig 2.1: Poisson (lambda=2) vs Gumbel-softmax approximate samples for several K (eqs 2.10-2.12)
fig-2.1: ## Poisson vs Gumbel-softmax histograms for several K
	$(PY) scripts/fig_2_1.py --out-dir $(FIG_DIR)

# Fig 2.2: target vs achieved correlation of the Gaussian-copula Poisson (section 2.2.4)
fig-2.2: ## target vs achieved correlation of the copula Poisson
	$(PY) scripts/fig_2_2.py --out-dir $(FIG_DIR)
