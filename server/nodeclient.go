package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/config"
)

// ClientConfigFromNode builds a client RPC server's Config from a node's
// configuration (client-rpc-*, and the users of rpc-users or security),
// with its auth.Service. A DB data source opens its database through
// database/sql, so its driver must be linked into the program (import
// github.com/hawser-rpc/hawser/drivers for "sqlite" and "pgx"), and is
// pinged once, within client-rpc-timeout (at least 5 s). release closes
// the database (a no-op for the other sources); call it after the server
// has closed.
func ClientConfigFromNode(n config.Node) (cfg Config, release func() error, err error) {
	n = n.WithDefaults()
	if err := n.Validate(); err != nil {
		return Config{}, nil, err
	}
	if !n.ClientEnabled() {
		return Config{}, nil, errors.New("server: no client users: set rpc-users or security.auth-service")
	}
	release = func() error { return nil }
	var src auth.Source
	enc := auth.EncryptionNone
	switch {
	case len(n.RPCUsers) > 0:
		src, err = auth.NewInMemory(auth.EncryptionNone, authUsers(n.RPCUsers))
	default:
		ds := n.Security.AuthService.DataSource
		if enc, err = auth.ParseEncryption(ds.PasswordEncryption); err != nil {
			return Config{}, nil, err
		}
		if strings.EqualFold(ds.Type, config.DataSourceInMemory) {
			src, err = auth.NewInMemory(enc, authUsers(ds.Users))
			break
		}
		var db *sql.DB
		if db, err = openDB(ds.Connection, max(5*time.Second, n.ClientTimeout.Duration())); err != nil {
			return Config{}, nil, err
		}
		release = db.Close
		if src, err = auth.NewDB(db, auth.DBOptions{}); err != nil {
			_ = db.Close()
			return Config{}, nil, fmt.Errorf("server: security.auth-service.data-source: %w", err)
		}
	}
	if err != nil {
		return Config{}, nil, fmt.Errorf("server: client users: %w", err)
	}
	if c := n.Security; c != nil && c.AuthService.Options.Cache != nil {
		cc := c.AuthService.Options.Cache
		src = auth.NewCached(src, auth.CacheConfig{ExpireAfter: time.Duration(cc.ExpireAfterSecs) * time.Second, MaxEntries: cc.MaxEntries})
	}
	l := n.ClientLoginLimit
	svc, err := auth.New(auth.Config{Source: src, Encryption: enc,
		Limit: auth.LoginLimit{Failures: l.Failures, Window: l.Window.Duration(), Lockout: l.Lockout.Duration()}})
	if err != nil {
		_ = release()
		return Config{}, nil, err
	}
	return Config{
		BindAddr:          n.ClientBindAddr,
		Port:              n.ClientPort,
		CertFile:          n.ClientCertPath,
		KeyFile:           n.ClientKeyPath,
		InsecurePlaintext: n.ClientInsecurePlaintext,
		NodeID:            n.NodeID,
		Timeout:           n.ClientTimeout.Duration(),
		InactivityTimeout: n.InactivityTimeout.Duration(),
		Auth:              svc,
		Observables:       observablesFromNode(n.ClientObservables),
		Dedup:             dedupFromNode(n.ClientDedup),
	}, release, nil
}

// observablesFromNode maps client-rpc-observables (validated by config).
func observablesFromNode(o config.Observables) ObservableConfig {
	c := ObservableConfig{BufferBytes: o.BufferBytes, MaxSubscriptions: o.MaxSubscriptions}
	switch {
	case strings.EqualFold(o.Overflow, config.OverflowKick):
		c.Overflow = hawser.OverflowKick
	case strings.EqualFold(o.Overflow, config.OverflowBlock):
		c.Overflow = hawser.OverflowBlock
	}
	return c
}

// dedupFromNode maps client-rpc-dedup; its window of -1 ms is negative,
// which turns deduplication off.
func dedupFromNode(d config.Dedup) DedupConfig {
	return DedupConfig{Window: d.Window.Duration(), MaxEntries: d.MaxEntries, MaxReplyBytes: d.MaxReplyBytes, MaxBytes: d.MaxBytes}
}

func authUsers(us []config.User) []auth.UserConfig {
	out := make([]auth.UserConfig, len(us))
	for i, u := range us {
		out[i] = auth.UserConfig{Username: u.Username, Password: u.Password, Permissions: u.Permissions}
	}
	return out
}

// openDB opens and pings a DB data source's database.
func openDB(c *config.Connection, timeout time.Duration) (*sql.DB, error) {
	db, err := sql.Open(c.Driver, c.DSN)
	if err != nil {
		if strings.Contains(err.Error(), "unknown driver") {
			return nil, fmt.Errorf("server: security.auth-service.data-source.connection.driver %q is not linked into this program: "+
				"import github.com/hawser-rpc/hawser/drivers (sqlite, pgx) or the driver's own package: %w", c.Driver, err)
		}
		return nil, fmt.Errorf("server: opening the users' database: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("server: the users' database (driver %s) does not answer: %w", c.Driver, err)
	}
	return db, nil
}
