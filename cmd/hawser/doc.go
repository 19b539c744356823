// Command hawser is the operator's tool for a hawser cluster: it hashes a
// client RPC user's password for a SHIRO_1_CRYPT or ARGON2ID data source,
// makes a development certificate, and makes a cluster-key.
//
//	hawser hash-password [--format argon2id|shiro1] [--alg SHA-256] [--iterations N]
//	hawser dev-cert [--host h1,h2] [--out dir]
//	hawser cluster-key
//
// hash-password reads the password from the terminal without echo, twice,
// or one line from standard input when that is not a terminal, and prints
// the hash on standard output. dev-cert writes cert.pem and key.pem and
// prints the YAML lines that use them. cluster-key prints a new random key.
//
// It is not a node: it starts nothing and reads no configuration file.
package main
