#!/bin/sh
# Regenerates vectors.txt with Apache Shiro 1.3.2 from Debian 12's
# libshiro-java (see README.md). Salts are random: every run differs.
set -eu
cd "$(dirname "$0")"
J=/usr/share/java
CP=$J/shiro-core.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar:$J/commons-beanutils.jar:$J/commons-logging.jar
HASHER_CP=$J/shiro-tools-hasher.jar:$J/commons-cli.jar:$CP
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
javac -encoding UTF-8 -d "$out" -cp "$CP" GenVectors.java
{
	echo "# \$shiro1\$ hashes made by Apache Shiro 1.3.2: <hash><TAB><password> (UTF-8; the"
	echo "# password is the rest of the line, possibly empty). Made by gen.sh: see README.md."
	echo "# GenVectors.java (DefaultPasswordService; SimpleHash for the empty password):"
	java -cp "$out:$CP" GenVectors
	echo "# Shiro's command-line Hasher, value mode (-gs -f shiro1), password hunter2:"
	for opts in "-a SHA-256 -i 500000" "-a SHA-512 -i 1000" "-a SHA-1 -i 2" "-a MD5 -i 1"; do
		# shellcheck disable=SC2086 # opts is split on purpose
		printf '%s\thunter2\n' "$(java -cp "$HASHER_CP" org.apache.shiro.tools.hasher.Hasher $opts -gs -f shiro1 hunter2)"
	done
} >vectors.txt
