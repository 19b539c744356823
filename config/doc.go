// Package config is the schema of a node's RPC configuration file: the YAML
// keys are product surface (after Stalwart's cluster RPC) and keep these
// exact names. Load parses strictly: an unknown key is an error, so a typo
// does not silently fall back to a default. The server and pool packages
// turn a Node into their own configurations (server.ConfigFromNode,
// pool.ConfigFromNode).
package config
