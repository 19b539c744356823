#!/usr/bin/env bash
# postgres.sh: a throwaway PostgreSQL server for the drivers module's tests.
#
#   eval "$(scripts/postgres.sh start)"   # exports HAWSER_TEST_PG_DSN
#   scripts/postgres.sh status            # prints the export line again; exit 3 if not running
#   scripts/postgres.sh stop
#
# start finds the server binaries (HAWSER_PG_BIN, else the newest /usr/lib/postgresql/*/bin,
# else PATH), installing Debian's postgresql package first if there are none and it runs as
# root with apt-get. It makes a temp dir, runs initdb and postgres there as a non-root user
# (the package's postgres user when run as root, creating hawser-pg if there is none; initdb
# refuses root), listening on 127.0.0.1 only, on a port the kernel says is free, with its unix
# socket in the temp dir (mode 700, where local connections are trusted; TCP asks for a
# password). It waits for pg_isready, creates the role hawser, with a random password, and its
# database hawser_test, and writes the line
#   export HAWSER_TEST_PG_DSN=postgres://hawser:...@127.0.0.1:PORT/hawser_test?sslmode=disable
# to the state file, which it also prints on stdout (messages go to stderr). stop stops the
# server and removes the temp dir and the state file.
#
# Both are idempotent: start with the state file's server up prints its line again (a stale
# state file is cleaned up first); stop without one does nothing. A failed start leaves
# nothing behind but prints the server's log.
#
# The state file is HAWSER_PG_STATE, default ${TMPDIR:-/tmp}/hawser-postgres-$UID/state.env;
# servers with separate state files are separate (scripts/test-drivers.sh uses its own), and
# concurrent starts or stops of one state file are serialized by a lock beside it.
set -euo pipefail

prog=${0##*/}
say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { die "usage: $prog start|stop|status"; }
[ $# -eq 1 ] || usage
cmd=$1
case $cmd in start | stop | status) ;; *) usage ;; esac

uid=$(id -u)
if [ -z "${HAWSER_PG_STATE:-}" ]; then
	sdir=${TMPDIR:-/tmp}/hawser-postgres-$uid
	mkdir -p -m 700 "$sdir"
	[ -O "$sdir" ] && [ ! -L "$sdir" ] || die "$sdir is not a directory of this user's; set HAWSER_PG_STATE"
	HAWSER_PG_STATE=$sdir/state.env
fi
state=$HAWSER_PG_STATE

# One start or stop at a time per state file.
# One start or stop at a time per state file. The server must not inherit the lock (run_as
# closes fd 9), or the next start or stop would wait for the server to exit.
if command -v flock >/dev/null; then
	exec 9>>"$state.lock"
	flock 9 || die "cannot lock $state.lock"
fi

# run_as runs a command as the server's user: this one unless it is root.
run_as() {
	if [ "$uid" -ne 0 ]; then
		"$@" 9>&-
	elif command -v runuser >/dev/null; then
		(cd / && runuser -u "$pg_user" -- "$@" 9>&-)
	else
		(cd / && su -s /bin/bash "$pg_user" -c "$(printf '%q ' "$@")" 9>&-)
	fi
}

find_bin() {
	if [ -n "${HAWSER_PG_BIN:-}" ]; then
		[ -x "$HAWSER_PG_BIN/initdb" ] || die "HAWSER_PG_BIN=$HAWSER_PG_BIN has no initdb"
		pg_bin=$HAWSER_PG_BIN
		return 0
	fi
	local d
	pg_bin=
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
		[ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_ctl" ] && pg_bin=$d
	done
	if [ -z "$pg_bin" ] && command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		pg_bin=$(dirname "$(command -v initdb)")
	fi
	[ -n "$pg_bin" ]
}

install_postgres() {
	[ "$uid" -eq 0 ] || die "no PostgreSQL server binaries (initdb, postgres, pg_ctl) found; install Debian's postgresql package (apt-get install postgresql) as root, or set HAWSER_PG_BIN"
	command -v apt-get >/dev/null || die "no PostgreSQL server binaries found and no apt-get to install them with: install PostgreSQL (initdb, postgres, pg_ctl, pg_isready, psql) and set HAWSER_PG_BIN"
	say "installing Debian's postgresql package (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2 || die "apt-get update failed (no network or no apt sources?): install postgresql by hand or set HAWSER_PG_BIN"
	apt-get install -y -q postgresql >&2 || die "apt-get install postgresql failed: install it by hand or set HAWSER_PG_BIN"
	find_bin || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
}

pick_user() {
	if [ "$uid" -ne 0 ]; then
		pg_user=$(id -un)
	elif id postgres >/dev/null 2>&1; then
		pg_user=postgres
	else
		pg_user=hawser-pg
		id "$pg_user" >/dev/null 2>&1 ||
			useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user" ||
			die "cannot create the user $pg_user to run PostgreSQL as (initdb refuses root)"
	fi
}

pick_port() {
	if command -v python3 >/dev/null; then
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
	else
		echo $((20000 + RANDOM % 40000))
	fi
}

# load_state reads the state file into pg_dir, pg_port, pg_user, pg_bin and dsn_line.
load_state() {
	[ -s "$state" ] || return 1
	pg_dir= pg_port= pg_user= pg_bin= dsn_line=
	# shellcheck disable=SC1090 # written by save_state, in a directory of this user's
	. "$state"
	[ -n "$pg_dir" ] && [ -n "$pg_port" ] && [ -n "$pg_bin" ] && [ -n "$dsn_line" ]
}

save_state() {
	(
		umask 077
		{
			printf 'pg_dir=%q\npg_port=%q\npg_user=%q\npg_bin=%q\n' "$pg_dir" "$pg_port" "$pg_user" "$pg_bin"
			printf 'dsn_line=%q\n' "$dsn_line"
		} >"$state.new"
		mv "$state.new" "$state"
	)
}

is_up() {
	[ -f "$pg_dir/data/postmaster.pid" ] && "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 2
}

# kill_server stops the server of pg_dir, if any, and removes pg_dir.
kill_server() {
	local data=$pg_dir/data pid
	if [ -f "$data/postmaster.pid" ]; then
		run_as "$pg_bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
		pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			say "pg_ctl did not stop postgres $pid; sending it SIGINT (fast shutdown)"
			kill -INT "$pid" 2>/dev/null || true
			local i
			for i in $(seq 1 20); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.5
			done
			if kill -0 "$pid" 2>/dev/null; then
				say "postgres $pid did not stop; killing it"
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
	fi
	case $pg_dir in
	*/hawser-pg.*) rm -rf -- "$pg_dir" ;;
	*) say "not removing $pg_dir: not a directory of $prog's" ;;
	esac
}

start() {
	if load_state; then
		if is_up; then
			say "already running on 127.0.0.1:$pg_port ($pg_dir)"
			printf '%s\n' "$dsn_line"
			return 0
		fi
		say "cleaning up a stale server ($pg_dir)"
		[ -n "$pg_user" ] || pick_user
		kill_server
		rm -f -- "$state"
	fi

	find_bin || install_postgres
	pick_user
	for tool in initdb pg_ctl pg_isready; do
		[ -x "$pg_bin/$tool" ] || die "$pg_bin/$tool missing"
	done
	local psql=$pg_bin/psql
	[ -x "$psql" ] || psql=$(command -v psql) || die "no psql (Debian's postgresql-client)"

	pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/hawser-pg.XXXXXXXX")
	start_ok=
	trap 'if [ -z "$start_ok" ]; then
		[ -f "$pg_dir/postgres.log" ] && { say "server log:"; tail -n 30 "$pg_dir/postgres.log" >&2; }
		kill_server
	fi' EXIT
	if [ "$uid" -eq 0 ]; then
		chown "$pg_user" "$pg_dir"
		run_as test -w "$pg_dir" || die "$pg_dir is not writable by $pg_user (is ${TMPDIR:-/tmp} reachable by it? set TMPDIR)"
	fi
	# A unix socket path has at most 107 bytes.
	[ ${#pg_dir} -le 80 ] || die "$pg_dir is too long for a unix socket path: set TMPDIR to a shorter directory"

	say "initdb in $pg_dir as $pg_user ($pg_bin)"
	run_as "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --no-locale -E UTF8 --no-sync \
		--auth-local=trust --auth-host=scram-sha-256 >"$pg_dir/initdb.log" 2>&1 ||
		{ cat "$pg_dir/initdb.log" >&2; die "initdb failed"; }

	# The kernel's free port may be taken before postgres binds it: try a few.
	local attempt started=
	for attempt in 1 2 3 4 5; do
		pg_port=$(pick_port)
		rm -f -- "$pg_dir/postgres.log"
		if run_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $pg_port -k '$pg_dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
			start >/dev/null; then
			started=1
			break
		fi
		grep -qiE 'could not bind|address already in use' "$pg_dir/postgres.log" 2>/dev/null || die "postgres did not start"
		say "port $pg_port taken (attempt $attempt); trying another"
	done
	[ -n "$started" ] || die "postgres did not start on any of 5 ports"

	local i
	for i in $(seq 1 60); do
		"$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 1 && break
		[ "$i" -lt 60 ] || die "postgres on 127.0.0.1:$pg_port does not accept connections"
		sleep 0.5
	done

	local pw
	pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
	run_as "$psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -U postgres -d postgres \
		-c "CREATE ROLE hawser LOGIN PASSWORD '$pw'" \
		-c "CREATE DATABASE hawser_test OWNER hawser" >&2 ||
		die "cannot create the role and database"

	dsn_line="export HAWSER_TEST_PG_DSN=postgres://hawser:$pw@127.0.0.1:$pg_port/hawser_test?sslmode=disable"
	save_state
	start_ok=1
	say "running on 127.0.0.1:$pg_port ($pg_dir); state in $state"
	printf '%s\n' "$dsn_line"
}

stop() {
	if ! load_state; then
		say "not running (no state in $state)"
		rm -f -- "$state"
		return 0
	fi
	[ -n "$pg_user" ] || pick_user
	kill_server
	rm -f -- "$state"
	say "stopped (127.0.0.1:$pg_port)"
}

status() {
	if load_state && is_up; then
		say "running on 127.0.0.1:$pg_port ($pg_dir)"
		printf '%s\n' "$dsn_line"
		return 0
	fi
	say "not running"
	return 3
}

"$cmd"
