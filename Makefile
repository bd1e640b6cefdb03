# The course's verbs. Each one sets up what it needs (a virtual environment in .venv).
#   make course    build and run every lab on the embedded offline dataset (results in build/)
#   make test      run all tests (what CI runs)
#   make release   build the student notebooks into grading/release/
#   make collect LAB=lab1 FROM=submissions.zip [ROSTER=ids.csv]  LMS download -> grading/submitted/
#   make grade     autograde new or changed submissions (sandboxed, in parallel); grades.csv
#   make feedback  one HTML page per student and lab (hidden tests redacted), grading/feedback/
#   make backup-gradebook  copy grading/gradebook.db and the CSVs to grading/backups/<time>/
#   make reset-grading     back up, then remove the gradebook and every grade record
#   make assets    pre-build every pre-trained model the labs hand out (GPU when present)
#   make student-bundle  what students receive, in build/student/ (host it at bundle_url)
#   make bench     run the benchmarks (prints ratios; record them in benchmarks/RESULTS.md)

PYTHON ?= python3
VENV   := .venv
PEERS  := .venv-peers
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.env-stamp
PEERS_STAMP := $(PEERS)/.env-stamp
# nbgrader shells out to alembic: the environment's bin/ must be on PATH.
export PATH := $(BIN):$(PATH)
# Idle OpenMP threads spin by default; on a small shared CPU that slows PyTorch several-fold.
export OMP_WAIT_POLICY ?= PASSIVE
PROFILE ?= cpu
DATASET ?= synthetic

.PHONY: env peers sandbox course test test-fast release grade assets student-bundle bench lint \
	clean backup-gradebook reset-grading collect feedback

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	$(VENV)/bin/python -m pip check
	touch $@

# Peer libraries for tests and benchmarks live in their own environment, layered on the
# course one: torchattacks pins an old `requests` that would break nbgrader's stack.
peers: $(PEERS_STAMP)

$(PEERS_STAMP): $(STAMP)
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(VENV)/bin/python -c "import site; print('import site; site.addsitedir(%r)' % site.getsitepackages()[0])" \
	  > $$($(PEERS)/bin/python -c "import site; print(site.getsitepackages()[0])")/course-env.pth
	$(PEERS)/bin/python -m pip install -q --no-deps torchattacks==3.5.1
	touch $@

course: env
	$(BIN)/labsupport course --profile $(PROFILE) --dataset $(DATASET)

# Grading runs student code in bubblewrap. Installed here when missing and we may (root with
# apt-get, as on CI); otherwise grading falls back to `unshare` or warns that it is not isolated.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(uname)" = Linux ] && [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null 2>&1 && { apt-get update -qq >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
	  || echo "note: bubblewrap (bwrap) is not installed; grading isolation is weaker"; }

test: env peers sandbox
	$(BIN)/ruff check labsupport tests benchmarks notebooks
	$(PEERS)/bin/python -m pytest -q -ra --durations=30

test-fast: env
	$(BIN)/python -m pytest -q -m "not slow"

release: env
	$(BIN)/labsupport release

grade: env sandbox
	$(BIN)/labsupport grade

collect: env
	@test -n "$(LAB)" -a -n "$(FROM)" || { echo "usage: make collect LAB=lab1 FROM=submissions.zip [ROSTER=ids.csv] [FORCE=1]"; exit 2; }
	$(BIN)/labsupport collect $(LAB) "$(FROM)" $(if $(ROSTER),--roster "$(ROSTER)") $(if $(FORCE),--force)

feedback: env
	$(BIN)/labsupport feedback

assets: env
	$(BIN)/labsupport assets build --all --dataset $(DATASET)

student-bundle: env
	$(BIN)/labsupport student-bundle --profile $(PROFILE) --dataset $(DATASET)

bench: env peers
	for script in benchmarks/*.py; do echo "== $$script"; $(PEERS)/bin/python $$script || exit 1; done

lint: env
	$(BIN)/ruff check labsupport tests benchmarks notebooks

# Never touches the gradebook, the submissions or the CSVs (see backup-gradebook).
clean:
	rm -rf build grading/source grading/release grading/feedback grading/results

backup-gradebook:
	@stamp=$$(date -u +%Y%m%dT%H%M%SZ); mkdir -p grading/backups/$$stamp; \
	for f in gradebook.db grades.csv flags.csv grading-state.json; do \
	  [ ! -e grading/$$f ] || cp -p grading/$$f grading/backups/$$stamp/; done; \
	echo "backed up to grading/backups/$$stamp/"

# Start grading over: backs the gradebook up first, then removes it with every grade record.
reset-grading: backup-gradebook
	rm -rf grading/gradebook.db grading/grades.csv grading/flags.csv grading/grading-state.json \
	  grading/flags-state.json grading/autograded grading/logs grading/results
