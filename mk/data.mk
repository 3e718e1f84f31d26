# Data sets: CIFAR-10 downloads itself on first use; CIFAR-10-C (2.9 GB) is fetched explicitly.
DATA_DIR ?= data
.PHONY: data-cifar10 data-cifar10c verify-data

data-cifar10: install ## download and verify CIFAR-10 into DATA_DIR
	$(PY) -m bioreg.data.cifar10 --download --data-dir $(DATA_DIR)

data-cifar10c: install ## download (resumable), verify and unpack CIFAR-10-C into DATA_DIR/CIFAR-10-C
	$(PY) -m bioreg.data.cifar10c --download --data-dir $(DATA_DIR)

verify-data: install ## check every CIFAR-10 / CIFAR-10-C file against its official MD5
	$(PY) -m bioreg.data.cifar10 --verify --data-dir $(DATA_DIR)
	$(PY) -m bioreg.data.cifar10c --verify --data-dir $(DATA_DIR)
