// Package auth is client RPC's security: users, their passwords and their
// permissions, after Corda's RPC security (node.conf's rpcUsers and
// security.authService).
//
// A Source holds the users: InMemory (rpc-users, or a data source of type
// INMEMORY), DB (a database/sql database with Corda's tables users,
// user_roles and roles_permissions), either behind Cached (options.cache,
// an expiring LRU). Stored passwords are plain (NONE, compared in constant
// time), Apache Shiro's $shiro1$ crypt format (SHIRO_1_CRYPT) or argon2id
// in PHC string form (ARGON2ID, the default for new hashes; `hawser
// hash-password` makes them).
//
// A Service checks logins (a server's Config.Auth): an unknown user and a
// wrong password fail alike, with hawser.ErrLoginFailed after the same work
// (the unknown user's password is checked against a decoy hash of the same
// cost); failures are limited per source address (LoginLimit), and the
// password checks running at once are bounded. A login gives a Session,
// which a client port checks every call against, reading the permissions
// from the Source each time, so that a change in a database takes effect
// without a restart (at once, or when the cache entry expires).
//
// Permissions follow Corda's grammar (ParsePermission): ALL,
// InvokeRpc.<method> (a registered method name, dots allowed),
// StartFlow.<flow>, and InvokeRpc.startFlow for every flow; the action is
// case-insensitive, names are not; a user has no permission by default,
// and a malformed string is an error, never a permission that matches
// nothing.
package auth
