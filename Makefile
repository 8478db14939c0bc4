# Shortcuts for `python tasks.py ...` (the same commands work without make, e.g. on Windows).
PYTHON ?= python3

.PHONY: lab test setup lint fix bench site slides
lab:
	$(PYTHON) tasks.py lab
test:
	$(PYTHON) tasks.py test
setup:
	$(PYTHON) tasks.py setup
lint:
	$(PYTHON) tasks.py lint
fix:
	$(PYTHON) tasks.py fix
bench:
	$(PYTHON) tasks.py bench
site:
	$(PYTHON) tasks.py site
slides:
	$(PYTHON) tasks.py slides
