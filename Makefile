# perfkit — PGXS build, plus the two set-up commands `make demo` and `make test`.
#
# `make` / `make install` are the ordinary PGXS targets (install needs write access to the server's
# directories, i.e. root on Debian).  `make test` and `make demo` install missing Debian packages
# when run as root, build, install into the server and into a private copy of the server under
# a temp directory, and run everything there; see test/lib.sh.

EXTENSION   = perfkit
EXTVERSION  = 0.3.0
MODULE_big  = perfkit
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/*/*.c)))

# perfkit--0.1.0.sql is the released base script; each later version adds an upgrade script
# (never edit a released script). CREATE EXTENSION runs the base script and then the upgrades.
DATA = sql/perfkit--0.1.0.sql $(wildcard sql/perfkit--*--*.sql)
PGFILEDESC = "perfkit - statement statistics, slow queries, N+1 detection, index advice"

# pg_regress suites (sql/NAME.sql, expected/NAME.out), run by test/run_tests.sh against a temp
# instance configured by test/regress.conf.  `make installcheck` also works on a running server
# that preloads perfkit.
REGRESS = setup statements percentiles utility nested pgss_parity eviction reset privileges slow nplusone index_builds redis advisor advisor_workload advisor_shop bad_input
REGRESS_OPTS = --inputdir=. --outputdir=results
ISOLATION = concurrent_updates
ISOLATION_OPTS = --inputdir=test/isolation

SHLIB_LINK += -lhiredis
PG_CPPFLAGS += -I$(srcdir)/src
# `make PERFKIT_ASSERTS=1` compiles perfkit's Assert()s in (make test does, for its private server)
ifeq ($(PERFKIT_ASSERTS),1)
PG_CPPFLAGS += -DUSE_ASSERT_CHECKING
endif
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else ifeq ($(filter test demo deps bench valgrind print-tests,$(MAKECMDGOALS)),)
$(error PostgreSQL server headers not found: run 'make deps' as root, or apt-get install postgresql-server-dev-15)
endif

# Every object depends on every header: a header change rebuilds everything (PGXS tracks none).
$(OBJS): $(wildcard src/*.h src/*/*.h)

.PHONY: test demo bench bench-instructions valgrind deps print-tests

deps:
	@bash test/lib.sh deps

test:
	@bash test/run_tests.sh

demo:
	@bash test/demo.sh

bench:
	@bash test/bench/pgbench_overhead.sh

bench-instructions:
	@bash test/bench/instructions_per_statement.sh

# The regression suite and the background workers under valgrind (slow: 10-30 minutes); not part of `make test`.
valgrind:
	@bash test/valgrind.sh

# Lists of suites for the test runner.
print-tests:
	@echo "REGRESS=$(REGRESS)"
	@echo "ISOLATION=$(ISOLATION)"
