# pg_taskevents: PGXS build of the extension; the relay lives in relay/.

EXTENSION = pg_taskevents
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = pg_taskevents
OBJS = \
	extension/pg_taskevents.o \
	extension/util.o \
	extension/config.o \
	extension/rowjson.o \
	extension/cloudevent.o \
	extension/outbox.o \
	extension/trigger.o \
	extension/recurrence.o \
	extension/reminders.o \
	extension/firebatch.o \
	extension/firing.o \
	extension/removal.o \
	extension/wakeup.o \
	extension/previous.o \
	extension/relaypage.o

# The install script is concatenated from extension/sql/*.sql in name order,
# so each concern keeps its own file (as pg_partman does).  The update
# scripts to this version are built from extension/updates/A--$(EXTVERSION).sql
# and the install script (extension/updates/build.awk says how); update
# scripts of released versions are kept in extension/ as they were built.
SQL_PARTS = $(sort $(wildcard extension/sql/*.sql))
TE_INSTALL_SQL = $(EXTENSION)--$(EXTVERSION).sql
TE_UPDATE_SOURCES = $(wildcard extension/updates/*--$(EXTVERSION).sql)
TE_UPDATE_SQL = $(patsubst extension/updates/%.sql,$(EXTENSION)--%.sql,$(TE_UPDATE_SOURCES))
DATA_built = $(TE_INSTALL_SQL) $(TE_UPDATE_SQL)
DATA = $(filter-out $(DATA_built),$(wildcard extension/$(EXTENSION)--*--*.sql))

TESTS = $(sort $(wildcard sql/*.sql))
REGRESS = $(patsubst sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --load-extension=$(EXTENSION)
ISOLATION = $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ISOLATION_OPTS = --load-extension=$(EXTENSION)

PG_CPPFLAGS = -DTASKEVENTS_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# Export only what is marked PGDLLEXPORT: the SQL-callable functions and
# _PG_init (PGXS adds this itself from PostgreSQL 16 on; see
# extension/compat.h for 15).  scripts/check-exports checks the result.
PG_CFLAGS += -fvisibility=hidden
EXTRA_CLEAN = $(DATA_built) relay/taskevents-relay .pg-build-id

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(TE_INSTALL_SQL): $(SQL_PARTS) $(EXTENSION).control
	cat $(SQL_PARTS) > $@

$(TE_UPDATE_SQL): $(EXTENSION)--%.sql: extension/updates/%.sql extension/updates/build.awk $(TE_INSTALL_SQL)
	awk -f extension/updates/build.awk $(TE_INSTALL_SQL) $< > $@.tmp && mv $@.tmp $@

$(OBJS): extension/taskevents.h extension/compat.h .pg-build-id

# Objects built against one PostgreSQL are useless against another: the
# stamp changes (and everything is rebuilt) when PG_CONFIG does.
PG_BUILD_ID := $(shell $(PG_CONFIG) --version) $(PG_CONFIG)
.pg-build-id: FORCE
	@echo '$(PG_BUILD_ID)' | cmp -s - $@ || echo '$(PG_BUILD_ID)' > $@
.PHONY: FORCE

# WITH_RELAY=no builds and installs the extension alone (one build per
# PostgreSQL version in the Debian packages and the version matrix; the
# relay is built once).
WITH_RELAY ?= yes
ifeq ($(WITH_RELAY),yes)
ifneq ($(wildcard relay/Makefile),)
all: relay
install: install-relay
endif
endif

# The relay's version is the extension's: relay/Makefile reads the same
# .control file when run on its own.
.PHONY: relay install-relay check-exports
relay:
	$(MAKE) -C relay PG_CONFIG=$(PG_CONFIG) RELAY_VERSION=$(EXTVERSION)

check-exports: $(shlib) $(TE_INSTALL_SQL)
	scripts/check-exports $(shlib) $(TE_INSTALL_SQL)

install-relay:
	$(MAKE) -C relay install PG_CONFIG=$(PG_CONFIG) RELAY_VERSION=$(EXTVERSION) DESTDIR=$(DESTDIR) \
		$(if $(prefix),prefix=$(prefix)) $(if $(RELAY_BINDIR),bindir=$(RELAY_BINDIR))
