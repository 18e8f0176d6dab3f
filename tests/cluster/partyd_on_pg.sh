#!/bin/sh
# partyd on the private PostgreSQL of with_pg.sh: a stand-in for the partyd
# binary (PARTYD_REAL) that suites written for the embedded store start, so
# they run unchanged on --store. Each process is a node of its own.
exec "$PARTYD_REAL" "$@" --store "$PARTYD_TEST_PG" --node "pg$$"
